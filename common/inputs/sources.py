"""Turning --audio arguments (files, folders, NeMo JSONL manifests) into a list of inputs.

A problem with one input (a missing path, a bad manifest line) becomes that input's error,
so that the other inputs still run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
MANIFEST_EXTENSIONS = (".json", ".jsonl")


@dataclass
class AudioInput:
    path: str
    text: Optional[str] = None  # reference transcript, from a manifest
    duration: Optional[float] = None  # from a manifest; the decoded length is what counts
    error: Optional[str] = None  # set when the input cannot be used at all


def collect_inputs(paths: list[str]) -> list[AudioInput]:
    items: list[AudioInput] = []
    for path in paths:
        if os.path.isdir(path):
            items.extend(_folder_inputs(path))
        elif path.lower().endswith(MANIFEST_EXTENSIONS) and os.path.isfile(path):
            items.extend(read_manifest(path))
        elif not os.path.exists(path):
            items.append(AudioInput(path, error=f"{path}: no such file or folder"))
        else:
            items.append(AudioInput(path))
    return items


def _folder_inputs(folder: str) -> list[AudioInput]:
    files = sorted(
        str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        kinds = "/".join(ext[1:] for ext in AUDIO_EXTENSIONS)
        return [AudioInput(folder, error=f"{folder}: folder holds no audio files ({kinds})")]
    return [AudioInput(f) for f in files]


def read_manifest(manifest: str) -> list[AudioInput]:
    """NeMo manifest: one JSON object per line with audio_filepath, optional duration and text.
    Relative audio paths are taken relative to the manifest's folder, as NeMo does."""
    base = os.path.dirname(os.path.abspath(manifest))
    items = []
    with open(manifest, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{manifest}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                items.append(AudioInput(where, error=f"{where}: invalid JSON ({error.msg})"))
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("audio_filepath"), str):
                items.append(AudioInput(where, error=f"{where}: no 'audio_filepath' string"))
                continue
            path = os.path.join(base, os.path.expanduser(entry["audio_filepath"]))
            duration = entry.get("duration")
            items.append(AudioInput(
                os.path.normpath(path),
                text=entry.get("text") if isinstance(entry.get("text"), str) else None,
                duration=float(duration) if isinstance(duration, (int, float)) else None,
            ))
    if not items:
        items.append(AudioInput(manifest, error=f"{manifest}: manifest has no entries"))
    return items
