"""Turning --audio arguments (files, folders, NeMo JSONL manifests) into a list of inputs.

Nothing here raises for a bad input: a missing path, an unreadable folder or manifest, a bad
manifest line becomes that input's error, so that the other inputs still run."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .audio import os_error_reason, wav_length_warning

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")
MANIFEST_EXTENSIONS = (".json", ".jsonl")


@dataclass
class AudioInput:
    path: str
    text: Optional[str] = None  # reference transcript, from a manifest
    duration: Optional[float] = None  # from a manifest; the decoded length is what counts
    error: Optional[str] = None  # set when the input cannot be used at all
    warning: Optional[str] = None  # usable, but its result should say so (a WAV header overstating the length)


def collect_inputs(paths: list[str]) -> list[AudioInput]:
    items = [item for path in paths for item in _inputs_from(path)]
    for item in items:
        if item.error is None:
            item.warning = wav_length_warning(item.path)
    return items


def _inputs_from(path: str) -> list[AudioInput]:
    if os.path.isdir(path):
        return _folder_inputs(path)
    if path.lower().endswith(MANIFEST_EXTENSIONS) and os.path.isfile(path):
        return read_manifest(path)
    if not os.path.exists(path):
        return [AudioInput(path, error=f"{path}: no such file or folder")]
    return [AudioInput(path)]  # checked when read: a pipe or a locked file says what it is then


def _folder_inputs(folder: str) -> list[AudioInput]:
    files, unreadable = _audio_files_under(folder)
    if not files and not unreadable:
        kinds = "/".join(ext[1:] for ext in AUDIO_EXTENSIONS)
        return [AudioInput(folder, error=f"{folder}: is a folder holding no audio files ({kinds})")]
    return [AudioInput(f) for f in sorted(files)] + unreadable


def _audio_files_under(folder: str) -> tuple[list[str], list[AudioInput]]:
    """Audio files under `folder`, following linked folders but entering each real folder once (a
    link to an ancestor would loop), and an error input for each subfolder that cannot be listed."""
    files, unreadable, seen = [], [], set()

    def report(error: OSError) -> None:
        unreadable.append(AudioInput(error.filename, error=f"{error.filename}: {os_error_reason(error)}"))

    for root, folders, names in os.walk(folder, onerror=report, followlinks=True):
        identity = _identity(root, report)
        if identity is None or identity in seen:
            folders.clear()
            continue
        seen.add(identity)
        paths = (str(Path(root, name)) for name in names if name.lower().endswith(AUDIO_EXTENSIONS))
        files.extend(path for path in paths if os.path.isfile(path))
    return files, unreadable


def _identity(folder: str, report) -> Optional[tuple[int, int]]:
    try:
        status = os.stat(folder)
    except OSError as error:
        report(error)
        return None
    return status.st_dev, status.st_ino


def read_manifest(manifest: str) -> list[AudioInput]:
    """NeMo manifest: one JSON object per line with audio_filepath, optional duration and text.
    A relative audio path is taken relative to the manifest's folder (NeMo's rule) if the file is
    there, else relative to the working folder (as exported manifests often mean it), else that
    line is an error naming both tries. Each line that cannot be used is an error input; a
    manifest that cannot be read at all is one."""
    base = os.path.dirname(os.path.abspath(manifest))
    items = []
    try:
        with open(manifest, "rb") as handle:  # bytes, so that one line that is not UTF-8 spoils only itself
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    items.append(_manifest_entry(line, f"{manifest}:{number}", base))
    except OSError as error:
        items.append(AudioInput(manifest, error=f"{manifest}: {os_error_reason(error)}"))
    if not items:
        items.append(AudioInput(manifest, error=f"{manifest}: manifest has no entries"))
    return items


def _manifest_entry(line: bytes, where: str, base: str) -> AudioInput:
    try:
        decoded = line.decode("utf-8-sig")  # -sig: Windows editors start a file with a byte-order mark
    except UnicodeDecodeError as error:
        return AudioInput(where, error=f"{where}: not valid UTF-8 (byte {error.start + 1})")
    try:
        entry = json.loads(decoded)
    except json.JSONDecodeError as error:
        return AudioInput(where, error=f"{where}: invalid JSON ({error.msg})")
    except RecursionError:
        return AudioInput(where, error=f"{where}: invalid JSON (nested too deeply)")
    if not isinstance(entry, dict) or not isinstance(entry.get("audio_filepath"), str):
        return AudioInput(where, error=f"{where}: no 'audio_filepath' string")
    path, error = _audio_path(os.path.expanduser(entry["audio_filepath"]), base)
    if error:
        return AudioInput(where, error=f"{where}: {error}")
    text = entry.get("text")
    return AudioInput(path, text=text if isinstance(text, str) else None, duration=_seconds(entry.get("duration")))


def _audio_path(path: str, base: str) -> tuple[str, Optional[str]]:
    """(the path to read, None), or (the path, why it cannot be found) for a relative path found
    neither beside the manifest nor in the working folder. An absolute path is taken as it is:
    reading it says what is wrong with it."""
    if os.path.isabs(path):
        return os.path.normpath(path), None
    beside_manifest = os.path.normpath(os.path.join(base, path))
    in_working_folder = os.path.normpath(os.path.abspath(path))
    for candidate in (beside_manifest, in_working_folder):
        if os.path.lexists(candidate):
            return candidate, None
    if beside_manifest == in_working_folder:
        return beside_manifest, (f"audio file not found: tried {beside_manifest} (relative to the manifest "
                                 "and to the working folder)")
    return beside_manifest, (f"audio file not found: tried {beside_manifest} (relative to the manifest) "
                             f"and {in_working_folder} (relative to the working folder)")


def _seconds(value) -> Optional[float]:
    """A manifest duration when it is a usable number; JSON also allows 1e999 (inf) and true."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
