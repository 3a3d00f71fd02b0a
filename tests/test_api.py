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

    output = tmp_path / "acc.json"
    result = check_accuracy(clips[:2], model=str(tiny_nemo), device="cpu", warmup=0, output=str(output))
    assert result.passed and [f.match for f in result.files] == [True, True]
    assert result.files[0].device_text == result.files[0].reference_text
    assert json.loads(output.read_text())["summary"] == result.summary
    perf = benchmark(clips[0], model=str(tiny_nemo), devices=("cpu",), warmup=0, runs=1)
    row = perf.rows[0]
    assert row.device == "cpu" and row.engine == "batched" and row.batch_size == 1
    assert row.audio_seconds == pytest.approx(soundfile.info(clips[0]).duration, abs=1e-3)
    assert row.rtfx == pytest.approx(row.audio_seconds / row.median_seconds, rel=0.01)
    assert perf.csv().splitlines()[0].startswith("device,dtype,engine,batch_size")
