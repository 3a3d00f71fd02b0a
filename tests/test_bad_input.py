"""Bad inputs: one line naming the file and the problem, exit 1 alone, reported in a batch
while the good files are still transcribed (by inference.py, accuracy_run.py and
accuracy_run_perf.py alike); bad models exit 2. No tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import accuracy_run
import accuracy_run_perf
import inference
from tests.conftest import REPO
from tests.test_inference import run_json, run_script
from tests.test_inputs import write_lying_wav


def make_bad_inputs(folder, good_clip) -> dict[str, str]:
    """name -> (path, expected words in the error)."""
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    not_audio = folder / "notes.wav"
    not_audio.write_text("this is a text file, not audio\n" * 20)
    zero = folder / "zero.wav"
    soundfile.write(zero, np.zeros(0, dtype=np.float32), 16000)
    nan = folder / "nan.wav"
    soundfile.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    manifest = folder / "broken.jsonl"
    manifest.write_text('{"audio_filepath": "%s"}\n{not json\n{"duration": 1}\n' % good_clip)
    return {
        "missing": (str(folder / "missing.wav"), "no such file"),
        "empty": (str(empty), "empty file"),
        "not_audio": (str(not_audio), "not a readable audio file"),
        "zero": (str(zero), "no audio samples"),
        "nan": (str(nan), "NaN"),
        "manifest_line": (str(manifest), "broken.jsonl:2: invalid JSON"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, clips):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"), clips[0])


@pytest.mark.parametrize("name", ["missing", "empty", "not_audio", "zero", "nan"])
def test_single_bad_file_is_one_line_and_exit_1(capsys, tiny_nemo, bad_inputs, name):
    path, expected = bad_inputs[name]
    code = inference.main(["--model", str(tiny_nemo), "--device", "cpu", path])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(errors) == 1 and path in errors[0] and expected in errors[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_bad_files_in_a_batch_are_reported_and_the_rest_run(capsys, tiny_nemo, bad_inputs, clips):
    paths = [clips[0]] + [path for path, _ in bad_inputs.values()] + [clips[1]]
    code, doc, err = run_json(capsys, "--model", tiny_nemo, "--batch-size", 3, *paths)
    assert code == 1
    by_path = {r["path"]: r for r in doc["results"]}
    for path, expected in bad_inputs.values():
        if path.endswith(".jsonl"):
            continue
        assert expected in by_path[path]["error"] and by_path[path]["text"] is None
    manifest_rows = [r for r in doc["results"] if ".jsonl:" in r["path"]]
    assert [r["error"] for r in manifest_rows] == [
        f"{bad_inputs['manifest_line'][0]}:2: invalid JSON (Expecting property name enclosed in double quotes)",
        f"{bad_inputs['manifest_line'][0]}:3: no 'audio_filepath' string",
    ]
    good = [r for r in doc["results"] if r["error"] is None]
    # clips[0] twice (directly and from the manifest's first line) and clips[1].
    assert [r["path"] for r in good] == [clips[0], clips[0], clips[1]]
    assert all(r["text"] for r in good)
    assert doc["summary"]["failed"] == len(doc["results"]) - 3
    assert err.count("error:") == doc["summary"]["failed"] and "Traceback" not in err


def test_a_batch_where_every_input_is_bad_does_not_load_the_model(capsys, bad_inputs):
    # The model does not even exist as a random build: it is never restored.
    path, _ = bad_inputs["missing"]
    code = inference.main(["--model", "random:parakeet", "--device", "cpu", path])
    assert code == 1
    assert "no such file" in capsys.readouterr().err


def test_inputs_are_checked_before_a_device_is_chosen_or_the_model_loaded(bad_inputs):
    """Every input that fails the cheap checks (missing, empty, not audio, no samples) is reported
    before anything heavy: with none left to run, no device is chosen (no device line) and the
    model is never loaded; the exit status says they failed."""
    names = ("missing", "empty", "not_audio", "zero")
    proc = run_script("--model", "demo", *[bad_inputs[name][0] for name in names])
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[-1] == "4 of 4 input(s) failed" and len(lines) == 5, proc.stderr
    for line, name in zip(lines, names):
        path, words = bad_inputs[name]
        assert line.startswith(f"error: {path}: ") and words in line, proc.stderr
    assert "device:" not in proc.stderr and "model:" not in proc.stderr


@pytest.fixture(scope="module")
def unusable(tmp_path_factory, clips) -> dict:
    """Inputs that used to stop a whole batch or be refused, next to good ones: a folder named
    like a file, a manifest whose line 2 is not UTF-8 (lines 1 and 3 are good), a pipe, a
    dangling link, and a WAV whose header claims twice the audio it holds (with its correct twin)."""
    folder = tmp_path_factory.mktemp("unusable")
    (folder / "dir.wav").mkdir()
    manifest = folder / "mixed.jsonl"
    manifest.write_bytes(b'{"audio_filepath": "%s"}\n\xff\xfe{"audio_filepath": "x.wav"}\n{"audio_filepath": "%s"}\n'
                         % (clips[2].encode(), clips[3].encode()))
    os.mkfifo(folder / "pipe.wav")
    os.symlink(folder / "gone.wav", folder / "dangling.wav")
    signal, _ = soundfile.read(clips[0], dtype="float32")
    soundfile.write(folder / "correct.wav", signal, 16000, subtype="PCM_16")
    write_lying_wav(folder / "lying.wav", signal, claimed_samples=2 * len(signal))
    return {
        "errors": {str(folder / "dir.wav"): "is a folder", f"{manifest}:2": "not valid UTF-8",
                   str(folder / "pipe.wav"): "not a regular file", str(folder / "dangling.wav"): "no such file"},
        "paths": [str(folder / name) for name in ("dir.wav", "mixed.jsonl", "pipe.wav", "dangling.wav")],
        "correct": str(folder / "correct.wav"), "lying": str(folder / "lying.wav"),
    }


def error_lines_name_each_bad_input(err: str, expected: dict) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    for path, words in expected.items():
        assert any(f"error: {path}: " in line and words in line for line in lines), (path, err)
    assert "Traceback" not in err


def test_unusable_inputs_in_a_batch_are_reported_and_the_rest_run(capsys, tiny_nemo, clips, unusable):
    paths = [clips[0], *unusable["paths"], unusable["lying"], unusable["correct"], clips[1]]
    code, doc, err = run_json(capsys, "--model", tiny_nemo, "--batch-size", 3, *paths)
    assert code == 1
    by_path = {r["path"]: r for r in doc["results"]}
    for path, words in unusable["errors"].items():
        assert by_path[path]["text"] is None and by_path[path]["error"].startswith(f"{path}: "), by_path[path]
        assert words in by_path[path]["error"]
    good = [r for r in doc["results"] if r["error"] is None]
    assert [r["path"] for r in good] == [clips[0], clips[2], clips[3], unusable["lying"], unusable["correct"], clips[1]]
    assert all(r["text"] for r in good)
    # The lying header is no obstacle: the text is that of the same audio written correctly.
    assert by_path[unusable["lying"]]["text"] == by_path[unusable["correct"]]["text"]
    assert "truncated WAV" in by_path[unusable["lying"]]["warning"] and "warning" not in by_path[unusable["correct"]]
    assert doc["summary"]["failed"] == len(unusable["errors"])
    error_lines_name_each_bad_input(err, unusable["errors"])


def test_accuracy_run_compares_the_usable_inputs(capsys, tiny_nemo, clips, unusable):
    code = accuracy_run.main(["--model", str(tiny_nemo), "--device", "cpu", "--warmup", "0", "--json",
                              clips[0], *unusable["paths"], unusable["lying"]])
    captured = capsys.readouterr()
    entries = json.loads(captured.out)["accuracy"]["files"]
    files = {f["path"]: f for f in entries}
    assert code == 1 and "Traceback" not in captured.err
    assert len(files) == len(entries) == len(unusable["errors"]) + 4
    for path, words in unusable["errors"].items():
        assert files[path]["error"].startswith(f"{path}: ") and words in files[path]["error"]
    compared = [path for path, f in files.items() if not f["error"]]
    assert compared == [clips[0], clips[2], clips[3], unusable["lying"]]
    assert all(files[path]["match"] for path in compared)


def test_accuracy_run_perf_measures_the_usable_inputs(capsys, tiny_nemo, clips, unusable):
    code = accuracy_run_perf.main(["--model", str(tiny_nemo), "--devices", "cpu", "--runs", "1", "--warmup", "0",
                                   "--json", clips[0], *unusable["paths"], unusable["lying"]])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 1 and "Traceback" not in captured.err
    assert [i["path"] for i in doc["inputs"]] == [clips[0], clips[2], clips[3], unusable["lying"]]
    assert len(doc["input_errors"]) == len(unusable["errors"])
    for path, words in unusable["errors"].items():
        assert any(e.startswith(f"{path}: ") and words in e for e in doc["input_errors"]), doc["input_errors"]
    assert doc["results"] and all(r["latencies"] for r in doc["results"])
    error_lines_name_each_bad_input(captured.err, unusable["errors"])


DAC_CAPABILITIES = "--bounding-set=-dac_override,-dac_read_search"


def run_locked_out(script: str, *argv) -> subprocess.CompletedProcess:
    """Run a script as someone a chmod 000 file keeps out. Root reads any file whatever its mode
    (the DAC capabilities), so as root the script runs with those capabilities dropped."""
    command = [sys.executable, str(REPO / script), *map(str, argv)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None or subprocess.run(["setpriv", DAC_CAPABILITIES, "true"]).returncode:
            pytest.skip("running as root, where chmod 000 does not lock a file, and setpriv cannot drop "
                        "CAP_DAC_OVERRIDE here: no unreadable file to test with")
        command = ["setpriv", DAC_CAPABILITIES, *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def locked(tmp_path_factory, clips) -> dict:
    """An audio file and a manifest without read permission."""
    folder = tmp_path_factory.mktemp("locked")
    audio, manifest = folder / "locked.wav", folder / "locked.jsonl"
    shutil.copy(clips[0], audio)
    manifest.write_text('{"audio_filepath": "%s"}\n' % clips[1])
    audio.chmod(0)
    manifest.chmod(0)
    return [str(audio), str(manifest)]


@pytest.mark.parametrize("script, argv", [
    ("inference.py", ["--device", "cpu", "--json"]),
    ("accuracy_run.py", ["--device", "cpu", "--warmup", "0", "--json"]),
    ("accuracy_run_perf.py", ["--devices", "cpu", "--runs", "1", "--warmup", "0", "--json"]),
])
def test_files_without_read_permission_do_not_stop_the_others(tiny_nemo, clips, locked, script, argv):
    proc = run_locked_out(script, "--model", tiny_nemo, *argv, clips[2], *locked, clips[3])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    if script == "accuracy_run_perf.py":
        assert [i["path"] for i in doc["inputs"]] == [clips[2], clips[3]] and doc["results"]
        errors = doc["input_errors"]
    else:
        records = doc["results"] if script == "inference.py" else doc["accuracy"]["files"]
        assert [r["path"] for r in records] == [clips[2], *locked, clips[3]]
        assert records[0]["error"] is None and records[3]["error"] is None
        errors = [r["error"] for r in records[1:3]]
    assert errors == [f"{path}: permission denied" for path in locked]


@pytest.mark.parametrize("setup, expected", [
    ("missing", "no such file or folder"),
    ("text", "not a .nemo archive"),
    ("empty_tar", "not a .nemo archive (no model_config.yaml inside)"),
    ("folder", "folder is not an extracted .nemo"),
    ("unknown_random", "unknown; choose one of random:parakeet, random:tiny"),
])
def test_bad_model_is_one_line_and_exit_2(capsys, tmp_path, clips, setup, expected):
    import tarfile

    model = {"missing": tmp_path / "nope.nemo", "text": tmp_path / "fake.nemo", "empty_tar": tmp_path / "e.nemo",
             "folder": tmp_path, "unknown_random": "random:huge"}[setup]
    if setup == "text":
        model.write_text("not a tar")
    if setup == "empty_tar":
        (tmp_path / "readme.txt").write_text("x")
        with tarfile.open(model, "w") as archive:
            archive.add(tmp_path / "readme.txt", arcname="readme.txt")
    code = inference.main(["--model", str(model), "--device", "cpu", clips[0]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: --model") and expected in err[0], err


def test_unreachable_hub_is_one_line_and_exit_2(tmp_path, clips):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = run_script("--model", "nvidia/parakeet-tdt-0.6b-v2", "--device", "cpu", clips[0], env=env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "Hugging Face hub" in errors[0] and "--model PATH" in errors[0]
    assert "Traceback" not in proc.stderr


def test_bad_option_values_exit_2(capsys, tiny_nemo, clips):
    assert inference.main(["--model", str(tiny_nemo), "--device", "tpu", clips[0]]) == 2
    assert "--device 'tpu': not one of" in capsys.readouterr().err
    assert inference.main(["--model", str(tiny_nemo), "--batch-size", "0", clips[0]]) == 2
    assert inference.main(["--model", str(tiny_nemo)]) == 2
    assert "no input" in capsys.readouterr().err


def test_debug_shows_the_traceback(tiny_nemo, bad_inputs):
    path, _ = bad_inputs["missing"]
    proc = run_script("--model", tiny_nemo, "--device", "cpu", "--debug", "--output-format", "srt", path, path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
