"""Turning --audio arguments (files, folders, NeMo JSONL manifests, and the test-set layouts of
layouts.py) into a list of inputs.

Nothing here raises for a bad input: a missing path, an unreadable folder or manifest, a bad
manifest line becomes that input's error, so that the other inputs still run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

from . import layouts
from .audio import os_error_reason, wav_length_warning
from .items import (AUDIO_EXTENSIONS, AudioInput, EmbeddedAudio, InputOptions, input_id, read_signal,  # noqa: F401 (re-exported)
                    resolve_relative)

STDIN = "-"  # the path that means: audio bytes on standard input
STDIN_NAME = "<stdin>"  # its name in records and messages


def stdin_input() -> AudioInput:
    """`-`: the audio bytes piped in (any format the decoder reads), read once, whole, now (before
    any model loads), and named <stdin>. Given twice, both are the same bytes."""
    import sys

    data = _stdin_bytes(sys.stdin)
    if isinstance(data, str):
        return AudioInput(STDIN_NAME, error=f"{STDIN_NAME}: {data}")
    return AudioInput(STDIN_NAME, embedded=EmbeddedAudio(STDIN_NAME, lambda: data))


_read_stdin: dict = {}


def _stdin_bytes(stream):
    """The bytes on `stream`, or why there are none (a str)."""
    if "data" not in _read_stdin:
        if stream is None or not hasattr(stream, "buffer"):
            return "no standard input to read"
        if stream.isatty():
            return "standard input is a terminal: pipe audio into it (cat talk.wav | python inference.py -)"
        try:
            _read_stdin["data"] = stream.buffer.read()
        except OSError as error:
            return os_error_reason(error)
    return _read_stdin["data"] or "empty audio (0 bytes)"


def collect_inputs(paths: list[str], options: InputOptions = InputOptions()) -> list[AudioInput]:
    """Every input the paths hold, in the layout each is detected as (or `options.layout`), cut to
    `options.limit`."""
    items = [item for path in paths for item in _inputs_from(path, options)]
    items = subset(items, options.limit, options.seed)
    for item in items:
        if item.error is None and item.embedded is None:
            item.warning = wav_length_warning(item.path)
    return items


def subset(items: list, limit: Optional[float], seed: int) -> list:
    """The first `limit` items (an int), or a share of them (a fraction in (0, 1)) drawn with
    `seed`, kept in input order."""
    if limit is None:
        return items
    if isinstance(limit, int):
        return items[:limit]
    import random

    count = max(1, round(limit * len(items))) if items else 0
    chosen = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[i] for i in chosen]


def _inputs_from(path: str, options: InputOptions = InputOptions()) -> list[AudioInput]:
    if path == STDIN:
        return [stdin_input()]
    layout = options.layout if options.layout != "auto" else layouts.detect_layout(path)
    if not os.path.exists(path):
        return [AudioInput(path, error=f"{path}: no such file or folder")]
    if layout == "librispeech":
        return layouts.read_librispeech(path)
    if layout == "kaldi":
        return layouts.read_kaldi(path)
    if layout == "hf":
        return layouts.read_hf(path, options)
    if layout == "manifest":
        if os.path.isdir(path):
            return [AudioInput(path, error=f"{path}: is a folder, not a NeMo manifest")]
        return read_manifest(path)
    if os.path.isdir(path):
        return _folder_inputs(path)
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
    path, error = resolve_relative(os.path.expanduser(entry["audio_filepath"]), base)
    if error:
        return AudioInput(where, error=f"{where}: {error}")
    text = entry.get("text")
    return AudioInput(path, text=text if isinstance(text, str) else None, duration=_seconds(entry.get("duration")),
                      entry=entry, id=input_id(entry.get("id")))


def _seconds(value) -> Optional[float]:
    """A manifest duration when it is a usable number; JSON also allows 1e999 (inf) and true."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
