"""Runs that lose nothing: the real script in a subprocess, interrupted mid-way with SIGINT and
SIGTERM, then resumed; the result must equal an uninterrupted run's. Output paths are checked
before any model is loaded, and a failed run never replaces an existing output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import inference
from tests.conftest import REPO

N_FILES = 24


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory, clips) -> list[str]:
    folder = tmp_path_factory.mktemp("many")
    paths = []
    for n in range(N_FILES):
        path = folder / f"take{n:02d}.wav"
        shutil.copy(clips[n % len(clips)], path)
        paths.append(str(path))
    return paths


def command(tiny_nemo, output, clips, *extra) -> list[str]:
    return [sys.executable, str(REPO / "inference.py"), "--model", str(tiny_nemo), "--device", "cpu",
            "--engine", "nemo", "--batch-size", "1", "--output-format", "json", "--output", str(output), *extra, *clips]


def records_of(stream) -> list[dict]:
    if not os.path.exists(stream):
        return []
    lines = open(stream, encoding="utf-8").read().splitlines()[1:]
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.fixture(scope="module")
def uninterrupted(tiny_nemo, many_clips, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("full") / "full.json"
    proc = subprocess.run(command(tiny_nemo, output, many_clips), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(output.read_text())


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_keeps_its_records_and_resumes_to_the_same_output(tiny_nemo, many_clips, uninterrupted,
                                                                          tmp_path, signum, code):
    output = tmp_path / "run.json"
    stream = tmp_path / "run.json.partial.jsonl"
    proc = subprocess.Popen(command(tiny_nemo, output, many_clips), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(records_of(stream)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    kept = records_of(stream)
    assert 3 <= len(kept) < N_FILES, "interrupted mid-way"
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and f"{len(kept)} finished record(s) kept in {stream}" in lines[0], err
    assert "--resume" in lines[0] and "Traceback" not in err
    assert not output.exists(), "an interrupted run publishes nothing"

    # Mark one kept record: a resume that reuses it (rather than transcribing it again) shows the mark.
    lines = stream.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[1])  # {"key": ..., "record": {...}}
    marked = entry["record"]
    marked["text"] = "kept, not transcribed again"
    lines[1] = json.dumps(entry) + "\n"
    stream.write_text("".join(lines), encoding="utf-8")
    resumed = subprocess.run(command(tiny_nemo, output, many_clips, "--resume"), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(kept)} of {N_FILES}" in resumed.stderr
    results = json.loads(output.read_text())["results"]
    assert [r["text"] for r in results if r["path"] == marked["path"]] == ["kept, not transcribed again"]
    assert [r for r in results if r["path"] != marked["path"]] == \
        [r for r in uninterrupted["results"] if r["path"] != marked["path"]]
    assert not stream.exists(), "a complete run removes its stream"


def test_a_second_run_never_destroys_kept_records(tiny_nemo, clips, tmp_path, capsys):
    output = tmp_path / "out.json"
    stream = tmp_path / "out.json.partial.jsonl"
    stream.write_text(json.dumps({"format": "parakeet-records/1", "settings": {}}) + "\n")
    before = stream.read_bytes()
    code = inference.main(["--model", str(tiny_nemo), "--output", str(output), clips[0]])
    err = capsys.readouterr().err
    assert code == 2 and f"{stream}: holds the finished records of an earlier run; add --resume" in err
    assert stream.read_bytes() == before and not output.exists()


def test_resume_with_other_settings_is_refused_naming_them(tiny_nemo, clips, tmp_path, capsys):
    output = tmp_path / "out.json"
    stream = tmp_path / "out.json.partial.jsonl"
    settings_of_bf16_run = {"model": "x", "device": "cpu", "dtype": "bf16"}
    stream.write_text(json.dumps({"format": "parakeet-records/1", "settings": settings_of_bf16_run}) + "\n")
    code = inference.main(["--model", str(tiny_nemo), "--device", "cpu", "--output", str(output), "--resume",
                           clips[0]])
    err = capsys.readouterr().err
    assert code == 2
    assert "dtype was 'bf16', now 'fp32'" in err and not output.exists()


def test_a_torn_last_line_is_dropped_on_resume(tiny_nemo, clips, tmp_path, capsys):
    output = tmp_path / "out.json"
    assert inference.main(["--model", str(tiny_nemo), "--output", str(tmp_path / "ref.json"), *clips[:2]]) == 0
    stream = tmp_path / "out.json.partial.jsonl"
    code = inference.main(["--model", str(tiny_nemo), "--json", "--output", str(output), clips[0],
                           str(tmp_path / "gone.wav")])
    assert code == 1 and stream.exists(), "a run with a failed input keeps its stream for --resume"
    with open(stream, "a", encoding="utf-8") as handle:
        handle.write('{"key": "torn')
    capsys.readouterr()
    code = inference.main(["--model", str(tiny_nemo), "--json", "--output", str(output), "--resume", clips[0],
                           str(tmp_path / "gone.wav")])
    assert code == 1 and "resuming: 1 of 2" in capsys.readouterr().err
    assert json.loads(output.read_text())["results"][0]["text"]


def test_output_equal_to_an_input_leaves_the_input_untouched(capsys, clips, tmp_path):
    audio = tmp_path / "x.wav"
    shutil.copy(clips[0], audio)
    before = audio.read_bytes()
    code = inference.main(["--model", "random:tiny", "--output", str(audio), str(audio)])
    err = capsys.readouterr().err
    assert code == 2 and f"--output {audio}: is one of the inputs" in err
    assert audio.read_bytes() == before


@pytest.mark.parametrize("make_output, expected", [
    (lambda tmp: tmp / "folder", "is a folder"),
    (lambda tmp: tmp / "missing" / "out.json", "does not exist"),
    (lambda tmp: tmp / "file.txt" / "out.json", "is not a folder"),
])
def test_unwritable_output_is_a_setup_error_before_loading(capsys, tiny_nemo, clips, tmp_path, make_output,
                                                           expected):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    output = make_output(tmp_path)
    start = time.monotonic()
    code = inference.main(["--model", str(tiny_nemo), "--output", str(output), clips[0]])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], err
    assert time.monotonic() - start < 5, "checked before the model is loaded"


def test_failed_run_leaves_an_existing_output_untouched(capsys, tmp_path):
    output = tmp_path / "good.json"
    output.write_text('{"good": true}\n')
    code = inference.main(["--model", "random:tiny", "--output", str(output), str(tmp_path / "gone.wav")])
    assert code == 1
    assert output.read_text() == '{"good": true}\n'
    assert "left as it was" in capsys.readouterr().err


def test_output_dir_names_are_unique_for_same_named_inputs(tiny_nemo, clips, tmp_path):
    for folder, clip in (("a", clips[0]), ("b", clips[1])):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(clip, tmp_path / "in" / folder / "x.wav")
    out = tmp_path / "out"
    inputs = [str(tmp_path / "in" / "a" / "x.wav"), str(tmp_path / "in" / "b" / "x.wav")]
    assert inference.main(["--model", str(tiny_nemo), "--output-dir", str(out), *inputs]) == 0
    texts = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.txt")}
    assert sorted(texts) == ["a/x.txt", "b/x.txt"]
    assert texts["a/x.txt"] != texts["b/x.txt"] or clips[0] == clips[1]


def accuracy_command(tiny_nemo, output, clips, *extra) -> list[str]:
    return [sys.executable, str(REPO / "accuracy_run.py"), "--model", str(tiny_nemo), "--device", "cpu",
            "--warmup", "0", "--output", str(output), "--json", *extra, *clips]


def comparisons(document: dict) -> list[tuple]:
    """What an accuracy run found per file (timings aside)."""
    return [(f["path"], f["reference"]["text"], f["device"]["text"], f["match"], f["wer"], f["drift"])
            for f in document["accuracy"]["files"]]


def test_interrupted_accuracy_run_resumes_both_sides(tiny_nemo, many_clips, tmp_path):
    full = tmp_path / "full.json"
    assert subprocess.run(accuracy_command(tiny_nemo, full, many_clips), capture_output=True, timeout=300).returncode == 0
    output, stream = tmp_path / "acc.json", tmp_path / "acc.json.partial.jsonl"
    proc = subprocess.Popen(accuracy_command(tiny_nemo, output, many_clips), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(records_of(stream)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    kept = records_of(stream)
    assert proc.returncode == 143 and 3 <= len(kept) < N_FILES, err
    assert f"interrupted: {len(kept)} finished record(s) kept in {stream}" in err and not output.exists()
    resumed = subprocess.run(accuracy_command(tiny_nemo, output, many_clips, "--resume"), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert comparisons(json.loads(output.read_text())) == comparisons(json.loads(full.read_text()))
    assert not stream.exists()


def test_reference_results_are_reused_not_recomputed(capsys, tiny_nemo, clips, tmp_path):
    import accuracy_run

    first = tmp_path / "first.json"
    assert accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--output", str(first), *clips[:2]]) == 0
    second = tmp_path / "second.json"
    assert accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--dtype", "bf16", "--min-match", "0",
                              "--max-wer", "1", "--reference-results", str(first), "--output", str(second),
                              *clips[:2]]) == 0
    before, after = json.loads(first.read_text()), json.loads(second.read_text())
    assert after["reference_model"]["reused_from"] == str(first)
    for old, new in zip(before["accuracy"]["files"], after["accuracy"]["files"]):
        assert new["reference"] == old["reference"], "the reference side is the earlier run's, timing included"
    capsys.readouterr()
    code = accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--reference-results", str(first),
                              "--json", clips[3]])
    document = json.loads(capsys.readouterr().out)
    assert code == 1 and "not in --reference-results" in document["accuracy"]["files"][0]["error"]


def test_failed_accuracy_run_leaves_an_existing_output_untouched(capsys, tmp_path):
    import accuracy_run

    output = tmp_path / "good.json"
    output.write_text('{"good": true}\n')
    code = accuracy_run.main(["--model", "random:tiny", "--device", "cpu", "--output", str(output),
                              str(tmp_path / "gone.wav")])
    assert code == 1 and output.read_text() == '{"good": true}\n'
    assert "left as it was" in capsys.readouterr().err


def test_a_signal_hidden_behind_a_librarys_own_error_still_stops_the_run(tiny_nemo, clips):
    """A SIGTERM landing inside NeMo's transcribe() setup came out as NeMo's own ValueError (its
    finally unfreezes what it had not frozen yet); per-file isolation took it for a bad file and
    the run went on. The signal in the error's chain stops the run."""
    from common.engine.transcriber import TranscribeOptions, transcribe_inputs
    from common.errors import Terminated
    from common.inputs.sources import collect_inputs
    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")

    def transcribe_hit_by_a_signal(*args, **kwargs):
        try:
            raise Terminated()
        finally:
            raise ValueError("Cannot unfreeze partially without first freezing the module with `freeze()`")

    loaded.model.transcribe = transcribe_hit_by_a_signal
    with pytest.raises(Terminated):
        list(transcribe_inputs(loaded, collect_inputs(clips[:2]), TranscribeOptions(engine="nemo", batch_size=2)))
