"""Bad inputs: one line naming the file and the problem, exit 1 alone, reported in a batch
while the good files are still transcribed; bad models exit 2. No tracebacks."""

from __future__ import annotations


import numpy as np
import pytest
import soundfile

import inference
from tests.test_inference import run_json, run_script


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
