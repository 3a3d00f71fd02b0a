"""Rendering transcription results as text, JSON, SRT or WebVTT."""

from __future__ import annotations

import json

from ..engine.records import FileRecord


def render_text(results: list[FileRecord]) -> str:
    """One file: its transcript. Several: 'path: transcript' lines. Failed files are left out
    (their errors go to stderr)."""
    ok = [r for r in results if r.ok]
    if len(results) == 1:
        return (ok[0].text + "\n") if ok else ""
    return "".join(f"{r.path}: {r.text}\n" for r in ok)


def render_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _cues(result: FileRecord) -> list[dict]:
    """Subtitle cues: segments if there are any, else words, else the whole text."""
    stamps = result.timestamps or {}
    for kind in ("segment", "word"):
        if stamps.get(kind):
            return [{"text": e.text, "start": e.start, "end": e.end} for e in stamps[kind]]
    if result.text:
        return [{"text": result.text, "start": 0.0, "end": result.duration or 0.0}]
    return []


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def render_srt(result: FileRecord) -> str:
    blocks = [
        f"{n}\n{_clock(c['start'], ',')} --> {_clock(c['end'], ',')}\n{c['text']}\n"
        for n, c in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def render_vtt(result: FileRecord) -> str:
    blocks = [f"{_clock(c['start'], '.')} --> {_clock(c['end'], '.')}\n{c['text']}\n" for c in _cues(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)


SUBTITLE_RENDERERS = {"srt": render_srt, "vtt": render_vtt}
