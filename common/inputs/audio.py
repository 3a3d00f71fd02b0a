"""Reading audio: any format libsndfile (or librosa's fallback) decodes, any rate and channel
count, converted to 16 kHz mono float32. Every failure is an AudioError naming the problem."""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import InputError

SAMPLE_RATE = 16000
# Formats libsndfile reads itself; a file with one of these names that it cannot open is not audio.
LIBSNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class AudioError(InputError):
    pass


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to a mono float32 signal at `sample_rate`, validating it on the way."""
    check_audio_header(path)
    signal, rate = _decode(path)
    if signal.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(signal).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        import librosa

        signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(signal, dtype=np.float32)


def _decode(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return data.mean(axis=1, dtype=np.float32), int(rate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
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


def _libsndfile_reason(path: str, error: BaseException) -> str:
    reason = str(error).replace(f"Error opening {path!r}: ", "").strip()
    return reason or type(error).__name__


def _check_wav_not_truncated(path: str, size: int) -> None:
    """A RIFF/WAVE file whose data chunk is shorter than its header says was cut off."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF mark a size left unset by a streaming writer: nothing to check.
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size:
                    raise AudioError(f"{path}: truncated WAV (header declares {chunk_size} bytes of audio, "
                                     f"file holds {available})")
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def duration_seconds(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return len(signal) / float(sample_rate)


def check_audio_header(path: str) -> None:
    """Cheap checks that need no decoding (size, truncation, a header libsndfile accepts), so
    that obviously bad files fail before a model is loaded."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise AudioError(f"{path}: no such file") from None
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a folder, not an audio file")
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    _check_wav_not_truncated(path, size)
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception as error:
        if path.lower().endswith(LIBSNDFILE_EXTENSIONS):
            raise AudioError(f"{path}: not a readable audio file ({_libsndfile_reason(path, error)})") from None
        return  # other formats (m4a) are decoded by librosa's fallback, which reports its own problems
    if info.frames == 0:
        raise AudioError(f"{path}: contains no audio samples")
