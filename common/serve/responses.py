"""OpenAI's /v1/audio/transcriptions answers made from a FileRecord, and OpenAI's error shape.
Subtitles are rendered as inference.py renders them (common/outputs/formats.py)."""

from __future__ import annotations

from typing import Optional

from ..engine.records import FileRecord
from ..outputs.formats import SUBTITLE_RENDERERS, render_text
from .settings import DEFAULT_GRANULARITIES

# What the transcript's language is called in verbose_json when the request names none: the
# model's language is not detected (parakeet-tdt-0.6b-v2 is an English model).
DEFAULT_LANGUAGE = "english"
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain",
               "srt": "application/x-subrip", "vtt": "text/vtt"}


def timestamps_for(response_format: str, granularities: tuple[str, ...]) -> str:
    """The timestamps Model.transcribe must give for the answer: subtitles cut segments by
    their words (as inference.py's srt/vtt), verbose_json the granularities asked for."""
    if response_format in SUBTITLE_RENDERERS:
        return "all"
    if response_format != "verbose_json":
        return "none"
    wanted = set(granularities or DEFAULT_GRANULARITIES)
    return "all" if wanted == {"word", "segment"} else wanted.pop()


def render(record: FileRecord, response_format: str, granularities: tuple[str, ...],
           language: Optional[str]) -> tuple[object, str]:
    """(body, media type): a dict for the JSON formats, text for the others."""
    if response_format == "json":
        return {"text": record.text}, MEDIA_TYPES["json"]
    if response_format == "text":
        return render_text([record]), MEDIA_TYPES["text"]
    if response_format in SUBTITLE_RENDERERS:
        return SUBTITLE_RENDERERS[response_format](record), MEDIA_TYPES[response_format]
    return verbose_json(record, granularities or DEFAULT_GRANULARITIES, language), MEDIA_TYPES["verbose_json"]


def verbose_json(record: FileRecord, granularities: tuple[str, ...], language: Optional[str]) -> dict:
    """OpenAI's verbose answer. Segments carry what parakeet has (text and times); Whisper's
    avg_logprob, compression_ratio and no_speech_prob are left out rather than made up."""
    body = {"task": "transcribe", "language": language or DEFAULT_LANGUAGE, "duration": record.duration,
            "text": record.text}
    stamps = record.timestamps or {}
    if "word" in granularities:
        body["words"] = [{"word": w.text, "start": w.start, "end": w.end} for w in stamps.get("word", [])]
    if "segment" in granularities:
        body["segments"] = [{"id": n, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                             "temperature": 0.0} for n, s in enumerate(stamps.get("segment", []))]
    return body


def error_body(message: str, error_type: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict:
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
