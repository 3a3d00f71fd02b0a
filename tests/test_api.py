"""The library API gives what the scripts give, as typed results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import inference
from tests.conftest import REPO


def test_importing_the_package_loads_neither_torch_nor_nemo():
    code = "import common, sys; common.load_model; print('torch' in sys.modules, 'nemo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_model_transcribe_equals_the_script(capsys, tiny_nemo, clips, tmp_path):
    from common import FileRecord, load_model

    assert inference.main(["--model", str(tiny_nemo), "--timestamps", "word", "--json", *clips[:3]]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    model = load_model(str(tiny_nemo), device="cpu")
    records = model.transcribe(clips[:3], timestamps="word")
    assert [r.to_dict() for r in records] == [{k: v for k, v in e.items() if k not in ("device", "model")}
                                              for e in expected]
    one = model.transcribe(clips[0], timestamps="word")
    assert isinstance(one, FileRecord) and one.words and one.words[0].start <= one.words[0].end
    signal, _ = soundfile.read(clips[0], dtype="float32")
    assert model.transcribe(signal).text == one.text
    missing = model.transcribe([clips[1], str(tmp_path / "gone.wav")])
    assert missing[0].ok and not missing[1].ok and "gone.wav" in missing[1].error
    arrays = model.transcribe([np.zeros(0, np.float32), signal, np.full(800, np.nan, np.float32),
                               np.stack([signal, signal]), (signal * 32767).astype(np.int16)])
    assert [r.ok for r in arrays] == [False, True, False, False, False] and arrays[1].text == one.text
    assert [r.error for r in arrays[::2]] == ["<array 0>: contains no audio samples",
                                             "<array 2>: contains NaN or infinite samples",
                                             "<array 4>: dtype int16: give float samples in [-1, 1]"]
    assert arrays[3].error.startswith("<array 3>: shape (2, ")


def test_check_accuracy_and_benchmark_return_typed_results(tiny_nemo, clips, tmp_path):
    from common import benchmark, check_accuracy
    from common.choices import BATCH_SIZE

    output = tmp_path / "acc.json"
    result = check_accuracy(clips[:2], model=str(tiny_nemo), device="cpu", warmup=0, output=str(output))
    assert result.passed and [f.match for f in result.files] == [True, True]
    assert result.files[0].device_text == result.files[0].reference_text
    assert [c.name for c in result.comparisons] == ["device vs reference"] and result.truth is None
    assert result.comparisons[0].match_rate == 1.0 and result.comparisons[0].wer.value == 0.0
    assert json.loads(output.read_text())["summary"] == result.summary
    perf = benchmark(clips[0], model=str(tiny_nemo), devices=("cpu",), warmup=0, runs=1)
    row = perf.rows[0]
    assert row.device == "cpu" and row.engine == "batched" and row.batch_size == BATCH_SIZE
    assert row.audio_seconds == pytest.approx(soundfile.info(clips[0]).duration, abs=1e-3)
    assert row.rtfx == pytest.approx(row.audio_seconds / row.median_seconds, rel=0.01)
    assert perf.csv().splitlines()[0].startswith("device,dtype,engine,batch_size")


def test_check_accuracy_against_the_truth_alone(tiny_nemo, clips, tmp_path):
    """reference=None: one pass, the device against the truth, typed: the figures equal jiwer's on
    the normalized texts, with their intervals, and max_truth_wer gives the verdict."""
    import jiwer

    from common import check_accuracy
    from common.errors import SetupError
    from common.measure.compare import normalize_english
    from tests.conftest import SENTENCES

    manifest = tmp_path / "truth.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": c, "text": t, "id": n}) + "\n"
                                for n, (c, t) in enumerate(zip(clips, SENTENCES))))
    result = check_accuracy(str(manifest), model=str(tiny_nemo), device="cpu", reference=None, warmup=0,
                            max_truth_wer=100.0)
    assert result.passed and result.failures == () and result.document["reference"] is None
    assert [c.name for c in result.comparisons] == ["device vs truth"]
    assert result.comparison("device vs reference") is None
    assert all(f.reference_text is None and f.match is None and f.device_text is not None for f in result.files)
    assert [f.id for f in result.files] == list(range(len(clips)))
    truths = [normalize_english(t) for t in SENTENCES]
    hypotheses = [normalize_english(f.device_text) for f in result.files]
    truth = result.truth
    assert truth.files == len(clips) and truth.wer.value == pytest.approx(jiwer.wer(truths, hypotheses))
    assert truth.wer.value > 0  # random weights: not a trivial 0
    assert truth.cer.value == pytest.approx(jiwer.cer(truths, hypotheses))
    assert truth.wer.ci95[0] <= truth.wer.value <= truth.wer.ci95[1] and truth.match_rate is None
    assert [f.truth_wer for f in result.files] == pytest.approx([jiwer.wer(t, h) for t, h in zip(truths, hypotheses)])

    failing = check_accuracy(str(manifest), model=str(tiny_nemo), device="cpu", reference=None, warmup=0,
                             max_truth_wer=truth.wer.value * 0.99)
    assert not failing.passed and failing.failures == (
        f"device vs truth: WER {truth.wer.value:.4f} > --max-truth-wer {truth.wer.value * 0.99:g}",)
    with pytest.raises(SetupError, match="--reference none: no input has a ground truth"):
        check_accuracy(clips[0], model=str(tiny_nemo), device="cpu", reference=None)


def test_transcribe_runs_as_the_script_does_checking_paths_before_any_model(tiny_nemo, clips, tmp_path, monkeypatch):
    """transcribe() of paths is inference.py's run (the job layer's transcribe_request): ids kept,
    and with no usable input the model (here one that cannot load: an unknown hub name, offline)
    is never touched."""
    from common import load_model, transcribe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gone = [str(tmp_path / "gone.wav"), str(tmp_path / "gone2.wav")]
    records = transcribe(gone, model="nobody/no-such-model", device="cpu")
    assert [r.error for r in records] == [f"{path}: no such file or folder" for path in gone]
    manifest = tmp_path / "ids.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": c, "id": f"u{n}"}) + "\n" for n, c in enumerate(clips)))
    records = transcribe(str(manifest), model=str(tiny_nemo), device="cpu")
    assert [r.id for r in records] == [f"u{n}" for n in range(len(clips))] and all(r.text for r in records)
    again = load_model(str(tiny_nemo), device="cpu").transcribe(str(manifest))
    assert [r.to_dict() for r in again] == [r.to_dict() for r in records]
