"""Reading audio: any format libsndfile (or librosa's fallback) decodes, any rate and channel
count, converted to 16 kHz mono float32. Every failure is an AudioError naming the file and the
problem, whatever raised it (the OS, libsndfile, librosa), so that callers catching InputError
skip one bad file and go on with the others."""

from __future__ import annotations

import os
import stat
import struct
from typing import Optional

import numpy as np

from ..errors import InputError

SAMPLE_RATE = 16000
# Formats libsndfile reads itself; a file with one of these names that it cannot open is not audio.
LIBSNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioError(InputError):
    pass


def os_error_reason(error: Exception) -> str:
    """'permission denied', 'is a directory', 'input/output error': the OS's words, without the
    errno and the path the caller already names."""
    reason = getattr(error, "strerror", None) or str(error)
    return reason[0].lower() + reason[1:] if reason else type(error).__name__


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to a mono float32 signal at `sample_rate`, validating it on the way. A WAV
    header that overstates the length is no obstacle: libsndfile decodes the samples present."""
    check_audio_header(path)
    return _checked(path, *_decode(path), sample_rate)


def load_audio_bytes(fetch, name: str, original_name: Optional[str] = None,
                     sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode audio held in memory (a dataset's embedded bytes); `name` says which input it is in
    errors. `fetch` returns the bytes; whatever it raises becomes this input's error."""
    try:
        data = fetch()
    except InputError:
        raise
    except Exception as error:
        raise AudioError(f"{name}: cannot read the embedded audio ({type(error).__name__}: {error})") from None
    if not data:
        raise AudioError(f"{name}: empty audio (0 bytes)")
    return _checked(name, *_decode_bytes(data, name, original_name), sample_rate)


def checked_array(name: str, samples) -> np.ndarray:
    """An array given as audio (16 kHz mono samples), refused when it is not one."""
    signal = np.asarray(samples)
    if signal.ndim != 1:
        raise AudioError(f"{name}: shape {signal.shape}: give 16 kHz mono samples, one dimension")
    if not np.issubdtype(signal.dtype, np.floating):
        raise AudioError(f"{name}: dtype {signal.dtype}: give float samples in [-1, 1]")
    return _checked(name, signal, SAMPLE_RATE, SAMPLE_RATE)


def _checked(name: str, signal: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """The decoded samples of `name`, refused when empty or not finite, at `sample_rate`."""
    if signal.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(signal).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if rate != sample_rate:
        signal = _resample(name, signal, rate, sample_rate)
    return np.ascontiguousarray(signal, dtype=np.float32)


def _decode_bytes(data: bytes, name: str, original_name: Optional[str]) -> tuple[np.ndarray, int]:
    import io

    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return samples.mean(axis=1, dtype=np.float32), int(rate)
    except Exception as error:
        libsndfile_error = error
    # Formats libsndfile lacks (m4a, some mp3): librosa's fallback needs a file.
    import tempfile

    suffix = os.path.splitext(original_name or "")[1][:8]
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        try:
            return _decode(handle.name)
        except AudioError:
            reason = str(libsndfile_error).strip() or type(libsndfile_error).__name__
            raise AudioError(f"{name}: not readable audio ({reason})") from None


def _decode(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return data.mean(axis=1, dtype=np.float32), int(rate)
    except Exception as error:
        libsndfile_error = error
    # Formats libsndfile lacks (m4a, some mp3) go through librosa's audioread fallback.
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, rate = librosa.load(path, sr=None, mono=True)
        return data.astype(np.float32, copy=False), int(rate)
    except Exception:
        reason = _libsndfile_reason(path, libsndfile_error)
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None


def _resample(path: str, signal: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    import librosa

    try:
        return librosa.resample(signal, orig_sr=rate, target_sr=sample_rate)
    except Exception as error:
        raise AudioError(f"{path}: cannot resample from {rate} Hz ({type(error).__name__}: {error})") from None


def _libsndfile_reason(path: str, error: BaseException) -> str:
    reason = str(error).replace(f"Error opening {path!r}: ", "").strip()
    return reason or type(error).__name__


def duration_seconds(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return len(signal) / float(sample_rate)


def check_audio_header(path: str) -> list[str]:
    """Cheap checks that need no decoding (a regular non-empty file, a header libsndfile accepts),
    so that obviously bad files fail before a model is loaded. Returns warnings about a file that
    is still usable: today only a WAV header overstating the length (see wav_length_warning)."""
    _check_regular_file(path)
    try:
        shortfall = _wav_shortfall(path)
    except OSError as error:
        raise AudioError(f"{path}: {os_error_reason(error)}") from None
    _check_libsndfile_header(path)
    return [shortfall] if shortfall else []


def wav_length_warning(path: str) -> Optional[str]:
    """The warning for a WAV whose header declares more audio than the file holds, or None; also
    None when the file cannot be read at all, which check_audio_header reports as an error."""
    try:
        return _wav_shortfall(path) if os.path.isfile(path) else None  # never open a pipe: it blocks
    except OSError:
        return None


def _check_regular_file(path: str) -> None:
    try:
        status = os.stat(path)
    except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte, from a manifest
        raise AudioError(f"{path}: {os_error_reason(error)}") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(status.st_mode):  # opening a pipe would wait for a writer forever
        raise AudioError(f"{path}: not a regular file (a pipe, socket or device)")
    if status.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _wav_shortfall(path: str) -> Optional[str]:
    """A RIFF/WAVE data chunk shorter than its header declares: the file was cut off, or its writer
    never came back to fix the size. libsndfile then decodes the samples that are there."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF mark a size left unset by a streaming writer: nothing claimed.
                if chunk_size in (0, 0xFFFFFFFF) or available >= chunk_size:
                    return None
                return (f"{path}: truncated WAV (header declares {chunk_size} bytes of audio, file holds "
                        f"{available}); using the audio that is there")
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


def _check_libsndfile_header(path: str) -> None:
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception as error:
        if path.lower().endswith(LIBSNDFILE_EXTENSIONS):
            raise AudioError(f"{path}: not a readable audio file ({_libsndfile_reason(path, error)})") from None
        return  # other formats (m4a, opus without libsndfile's codec) are left to librosa's fallback
    if info.frames == 0:
        raise AudioError(f"{path}: contains no audio samples")
