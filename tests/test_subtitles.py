"""SRT and WebVTT cues are readable: at most ~7 s, 2 lines of 42 characters, cut at word
boundaries, even for a long recording without punctuation (one NeMo segment for minutes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

import inference
from common.engine.records import FileRecord, Timestamp
from common.inputs.audio import load_audio
from common.outputs.formats import render_srt, render_vtt
from tests.conftest import REPO

DEMO_CLIPS = sorted(str(p) for p in (REPO / "demo" / "clips").glob("*.wav"))
TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def seconds(match: tuple) -> float:
    hours, minutes, secs, millis = map(int, match)
    return hours * 3600 + minutes * 60 + secs + millis / 1000


def parse(text: str, numbered: bool) -> list[dict]:
    """Cues of an SRT (numbered) or WebVTT document; fails on anything malformed."""
    if not numbered:
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    cues = []
    for number, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        if numbered:
            assert lines.pop(0) == str(number)
        times = re.fullmatch(f"{TIME} --> {TIME}", lines[0])
        assert times, lines[0]
        assert lines[1:] and all(line.strip() for line in lines[1:])
        cues.append({"start": seconds(times.groups()[:4]), "end": seconds(times.groups()[4:]), "lines": lines[1:]})
    return cues


def assert_readable(cues: list[dict], transcript: str, duration: float) -> None:
    assert " ".join(" ".join(c["lines"]) for c in cues) == transcript
    previous_end = 0.0
    for cue in cues:
        single_word = len(" ".join(cue["lines"]).split()) == 1
        assert previous_end <= cue["start"] <= cue["end"] <= duration
        assert cue["end"] - cue["start"] <= 7.0 or single_word
        assert len(cue["lines"]) <= 2 and (all(len(line) <= 42 for line in cue["lines"]) or single_word)
        previous_end = cue["end"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """The demo clips twice over: ~106 s of speech the demo model transcribes without punctuation."""
    path = tmp_path_factory.mktemp("long") / "recording.wav"
    soundfile.write(path, np.concatenate([load_audio(c) for c in DEMO_CLIPS] * 2), 16000)
    return path


@pytest.fixture(scope="module")
def record(recording) -> FileRecord:
    output = recording.with_suffix(".json")
    assert inference.main(["--model", "demo", "--device", "cpu", "--timestamps", "all", "--output-format", "json",
                           "--output", str(output), str(recording)]) == 0
    return FileRecord.from_dict(json.loads(output.read_text())["results"][0])


def test_a_long_unpunctuated_recording_gives_readable_srt_cues(record, recording):
    assert len(record.timestamps["segment"]) == 1, "the demo model writes no punctuation: one segment"
    output = recording.with_suffix(".srt")
    assert inference.main(["--model", "demo", "--device", "cpu", "--output-format", "srt", "--output", str(output),
                           str(recording)]) == 0
    cues = parse(output.read_text(), numbered=True)
    assert len(cues) > 10
    assert_readable(cues, record.text, record.duration)
    assert {c["start"] for c in cues} <= {w.start for w in record.words}, "cues start where words start"


def test_vtt_holds_the_same_cues_as_srt(record):
    srt, vtt = parse(render_srt(record), numbered=True), parse(render_vtt(record), numbered=False)
    assert vtt == srt
    assert_readable(vtt, record.text, record.duration)


def test_several_inputs_give_one_subtitle_file_each(tmp_path):
    code = inference.main(["--model", "demo", "--device", "cpu", "--output-format", "vtt", "--output-dir",
                           str(tmp_path), *DEMO_CLIPS[:2]])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(c).with_suffix(".vtt").name
                                                                 for c in DEMO_CLIPS[:2])
    for path in tmp_path.iterdir():
        assert parse(path.read_text(), numbered=False)


def words(text: str, start: float, step: float) -> list[Timestamp]:
    return [Timestamp(w, round(start + n * step, 3), round(start + (n + 1) * step, 3))
            for n, w in enumerate(text.split())]


def test_short_sentences_stay_whole_and_long_ones_are_cut_between_words():
    short, long = "Hello there.", " ".join(["word"] * 30) + "."
    stamps = words(short, 0.0, 0.5) + words(long, 2.0, 0.4)
    record = FileRecord("a.wav", 20.0, f"{short} {long}", {
        "word": stamps, "segment": [Timestamp(short, 0.0, 1.0), Timestamp(long, 2.0, 14.0)]})
    cues = parse(render_srt(record), numbered=True)
    assert cues[0] == {"start": 0.0, "end": 1.0, "lines": ["Hello there."]}
    assert len(cues) > 2
    assert_readable(cues, record.text, 20.0)


def test_a_word_longer_than_a_line_stands_alone_and_is_never_cut():
    giant = "x" * 50
    record = FileRecord("a.wav", 3.0, f"a {giant} b", {"word": words(f"a {giant} b", 0.0, 1.0)})
    assert [c["lines"] for c in parse(render_vtt(record), numbered=False)] == [["a"], [giant], ["b"]]


def test_without_timestamps_the_text_is_spread_over_the_duration():
    text = " ".join(f"word{n}" for n in range(40))
    cues = parse(render_srt(FileRecord("a.wav", 30.0, text)), numbered=True)
    assert len(cues) > 1 and cues[0]["start"] == 0.0 and cues[-1]["end"] == 30.0
    assert_readable(cues, text, 30.0)
