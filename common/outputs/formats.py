"""Rendering transcription results as text, JSON, SRT or WebVTT."""

from __future__ import annotations

import json
import textwrap
from typing import Optional

from ..engine.records import FileRecord, Timestamp


def render_text(results: list[FileRecord]) -> str:
    """One file: its transcript. Several: 'path: transcript' lines. Under each, the timestamps
    that were asked for, one indented line each: '  word    [0.32-0.56] hello'. Failed files are
    left out (their errors go to stderr)."""
    ok = [r for r in results if r.ok]
    if len(results) == 1:
        return "".join(r.text + "\n" + _timestamp_lines(r) for r in ok)
    return "".join(f"{r.path}: {r.text}\n" + _timestamp_lines(r) for r in ok)


def _timestamp_lines(record: FileRecord) -> str:
    width = max((len(kind) for kind in record.timestamps or {}), default=0)
    return "".join(f"  {kind:<{width}} [{t.start:.2f}-{t.end:.2f}] {t.text}\n"
                   for kind, stamps in (record.timestamps or {}).items() for t in stamps)


def render_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_nemo_manifest(records: list[FileRecord], entries: list[Optional[dict]]) -> str:
    """A NeMo result manifest, as NeMo's transcribe_speech.py writes it (and its
    speech_to_text_eval.py reads it): each input's manifest line with `pred_text` added, and
    the timestamps under their kind ("word", "segment", "char") when they were asked for.
    Inputs that were not manifest lines get `audio_filepath`, `duration`, the test set's `id`
    where it has one, and the ground truth as `text` where known (see nemo_truth). Failed inputs
    are left out (their errors go to stderr)."""
    lines = []
    for record, entry in zip(records, entries):
        if not record.ok:
            continue
        line = dict(entry) if entry else {"audio_filepath": record.path, "duration": record.duration}
        if not entry and record.id is not None:
            line["id"] = record.id
        if not entry and record.truth is not None:
            line["text"] = nemo_truth(record.truth)
        line["pred_text"] = record.text
        for kind, stamps in (record.timestamps or {}).items():
            line[kind] = [t.to_dict(kind) for t in stamps]
        lines.append(json.dumps(line, ensure_ascii=False) + "\n")
    return "".join(lines)


def nemo_truth(truth: str) -> str:
    """The truth as NeMo's speech_to_text_eval.py compares it: that script does not fold case by
    default, so an all-upper-case truth (LibriSpeech, many Kaldi sets) against a model's cased
    text would read WER 1.0. Such a truth is lower-cased; any other is kept as it is."""
    return truth.lower() if truth.isupper() else truth


# The usual subtitle limits (broadcast and streaming guidelines): a cue is read in at most ~7 s,
# on at most 2 lines of at most 42 characters.
MAX_CUE_SECONDS = 7.0
MAX_LINE_CHARS = 42
MAX_LINES = 2


def _cues(result: FileRecord) -> list[dict]:
    """Subtitle cues within the limits, cut at word boundaries: NeMo's segments (sentences)
    where it found any, each split further by the word timestamps inside it."""
    cues = [_cue(words, result.duration) for group in _word_groups(result) for words in _split(group)]
    return [c for c in cues if c["text"]]


def _word_groups(result: FileRecord) -> list[list[Timestamp]]:
    """The words of each segment (or of the whole text), with their times. Without word
    timestamps, times are spread over the segment in proportion to the characters."""
    stamps = result.timestamps or {}
    words = list(stamps.get("word") or [])
    if stamps.get("segment"):
        segments = stamps["segment"]
    elif words:
        segments = [Timestamp(" ".join(w.text for w in words), words[0].start, words[-1].end)]
    else:
        segments = [Timestamp(result.text or "", 0.0, result.duration or 0.0)]
    groups = []
    for segment in segments:
        # NeMo builds each segment from consecutive words: the next n words are this segment's.
        count = len(segment.text.split())
        inside, words = words[:count], words[count:]
        groups.append(inside if [w.text for w in inside] == segment.text.split() else _spread(segment))
    return groups


def _spread(segment: Timestamp) -> list[Timestamp]:
    """The segment's words, its time shared out in proportion to their characters."""
    texts = segment.text.split()
    total = sum(len(t) for t in texts) or 1
    span, words, done = segment.end - segment.start, [], 0
    for text in texts:
        start = segment.start + span * done / total
        done += len(text)
        words.append(Timestamp(text, start, segment.start + span * done / total))
    return words


def _split(words: list[Timestamp]) -> list[list[Timestamp]]:
    """Consecutive words packed greedily into cues that keep the limits; a word too long for
    them stands alone (a cue is never cut inside a word)."""
    cues: list[list[Timestamp]] = []
    for word in words:
        if cues and _fits(cues[-1] + [word]):
            cues[-1].append(word)
        else:
            cues.append([word])
    return cues


def _fits(words: list[Timestamp]) -> bool:
    lines = _lines(" ".join(w.text for w in words))
    return (words[-1].end - words[0].start <= MAX_CUE_SECONDS and len(lines) <= MAX_LINES
            and all(len(line) <= MAX_LINE_CHARS for line in lines))


def _lines(text: str) -> list[str]:
    return textwrap.wrap(text, MAX_LINE_CHARS, break_long_words=False, break_on_hyphens=False)


def _cue(words: list[Timestamp], duration: Optional[float]) -> dict:
    end = words[-1].end if duration is None else min(words[-1].end, duration)  # NeMo's last frame may overrun
    return {"text": "\n".join(_lines(" ".join(w.text for w in words))), "start": words[0].start, "end": end}


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
