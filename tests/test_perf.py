"""accuracy_run_perf.py: statistics, a complete and self-consistent results file, engines agreeing.
No timing thresholds here: speed is measured by the benchmark, not asserted by tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import accuracy_run_perf
from common.device.clocks import latency_stats, percentile
from common.engine.transcriber import plan_batches


def test_statistics_on_known_values():
    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    stats = latency_stats(values)
    assert stats["n"] == 5 and stats["min"] == 0.1 and stats["max"] == 0.5
    assert stats["mean"] == pytest.approx(0.3) and stats["median"] == pytest.approx(0.3)
    assert stats["p90"] == pytest.approx(0.46) and stats["p99"] == pytest.approx(0.496)
    assert stats["stdev"] == pytest.approx(np.std(values, ddof=1))
    rng = np.random.default_rng(0)
    sample = list(rng.random(37))
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(sample, q) == pytest.approx(np.percentile(sample, q))
    assert latency_stats([2.0])["stdev"] == 0.0


def test_batches_are_longest_first_and_cover_every_input_once():
    durations = [3.0, 9.0, 1.0, 7.0, 5.0]
    assert plan_batches(durations, 2, max_seconds=float("inf")) == [[1, 3], [4, 0], [2]]
    assert plan_batches(durations, 16, max_seconds=float("inf")) == [[1, 3, 4, 0, 2]]


@pytest.fixture(scope="module")
def perf_run(tmp_path_factory, tiny_nemo, clips):
    folder = tmp_path_factory.mktemp("perf")
    argv = ["--model", str(tiny_nemo), "--device", "cpu", "--warmup", "1", "--runs", "3",
            "--batch-sizes", "1,3", "--engine", "nemo,batched", "--dtype", "fp32",
            "--output", str(folder / "perf.json"), "--csv", str(folder / "perf.csv"), *clips]
    code = accuracy_run_perf.main(argv)
    return code, json.loads((folder / "perf.json").read_text()), (folder / "perf.csv").read_text()


def test_results_file_is_complete_and_self_consistent(perf_run, clips):
    code, doc, _ = perf_run
    assert code == 0 and doc["ok"] and doc["engines_identical"]
    assert [i["path"] for i in doc["inputs"]] == clips
    audio = sum(i["duration"] for i in doc["inputs"])
    assert set(doc["cold_start"]["cpu"]) == {"import_seconds", "load_seconds", "to_device_seconds",
                                             "first_call_seconds"}
    assert doc["environment"]["torch"] and doc["environment"]["cpu"] and "accuracy_run_perf" in doc["environment"]["command"]
    # the CPU's speed-deciding features (AMX, AVX512-BF16, VNNI), which the model name does not tell
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    assert set(doc["environment"]["cpu_flags"]) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                                    "amx_tile", "amx_bf16", "amx_int8"} & set(flags)
    assert "synchronized" in doc["timed"]
    assert len(doc["results"]) == 4  # 2 engines x 2 batch sizes
    for result in doc["results"]:
        cfg, stats = result["config"], result["stats"]
        assert len(result["latencies"]) == stats["n"] == 3
        assert stats["median"] == pytest.approx(float(np.median(result["latencies"])), abs=1e-5)
        assert result["rtfx"] == pytest.approx(audio / stats["median"], rel=1e-3)
        # the breakdown comes from its own stage run(s), apart from the timed runs
        assert len(result["stages"]) == len(result["stage_run_seconds"]) == doc["options"]["stage_runs"] == 1
        for run_stages, total in zip(result["stages"], result["stage_run_seconds"]):
            measured = sum(v["seconds"] for k, v in run_stages.items() if k != "other")
            assert measured <= total + 1e-4  # no stage counted twice
            assert {"features", "encoder"} <= set(run_stages)
            assert all(v["seconds"] > 0 for k, v in run_stages.items() if k != "other"), run_stages
            assert ("decoding" in run_stages) == (cfg["engine"] == "batched")
        batches = result["batches"]
        assert sorted(e["index"] for b in batches for e in b) == list(range(len(clips)))
        assert all(len(b) <= cfg["batch_size"] for b in batches)
        flat = [e["duration"] for b in batches for e in b]
        assert flat == sorted(flat, reverse=True)
        assert result["engine_check"]["identical"] and result["memory"]["peak"] > 0
    texts = {tuple(r["texts"]) for r in doc["results"]}
    assert len(texts) == 1, "every configuration must produce the same transcripts at fp32"


@pytest.mark.parametrize("engine", ["nemo", "batched"])
@pytest.mark.parametrize("slowed", ["preprocessor", "encoder"])
def test_stage_times_land_on_the_module_that_spent_them(tiny_nemo, clips, engine, slowed):
    """A known delay after every forward() of one module (a forward hook that sleeps, far longer
    than the tiny model's own stages) must be counted in that module's stage, and make it the
    longest of the timed stages."""
    import time

    from common.measure.perf import PerfConfig, PerfOptions, benchmark, load_signals
    from common.model.loading import load_model

    delay = 3.0
    loaded = load_model(str(tiny_nemo), "cpu")
    inputs = load_signals(clips[:2])
    handle = getattr(loaded.model, slowed).register_forward_hook(lambda *_: time.sleep(delay))
    try:
        result = benchmark(loaded, inputs.signals, inputs.durations, PerfConfig("cpu", "fp32", engine, 2),
                           PerfOptions(warmup=0, runs=1, check_engines=False), first_call=False)
    finally:
        handle.remove()
    assert len(result["batches"]) == 1
    timed_stages = {name: value["seconds"] for name, value in result["stages"][0].items() if name != "other"}
    stage = {"preprocessor": "features", "encoder": "encoder"}[slowed]
    assert timed_stages[stage] >= delay, timed_stages
    assert max(timed_stages, key=timed_stages.get) == stage, timed_stages


def test_csv_has_one_row_per_configuration(perf_run):
    _, doc, text = perf_run
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == len(doc["results"])
    assert [(r["engine"], int(r["batch_size"])) for r in rows] == [
        (res["config"]["engine"], res["config"]["batch_size"]) for res in doc["results"]]
    assert float(rows[0]["rtfx"]) == pytest.approx(doc["results"][0]["rtfx"])


def test_nemo_transcribe_does_not_leave_the_model_in_training_mode(tiny_nemo, clips):
    """NeMo's transcribe() unfreezes (= trains) encoder and decoder on exit; dropout would then
    make every later batched-engine result random."""
    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.inputs.audio import load_audio
    from common.model.loading import load_model

    loaded = load_model(str(tiny_nemo), "cpu")
    signal = [load_audio(clips[0])]
    transcribe_signals(loaded, signal, TranscribeOptions(engine="nemo"))
    assert not loaded.model.encoder.training and not loaded.model.decoder.training


def test_json_output_and_option_errors(capsys, tiny_nemo, clips):
    code = accuracy_run_perf.main(["--model", str(tiny_nemo), "--device", "cpu", "--runs", "1", "--warmup", "0",
                                   "--json", "--no-engine-check", clips[0]])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "engine_check" not in doc["results"][0]
    assert "first_call_seconds" not in doc["results"][0]  # no warm-up run, so no first call was separated
    assert accuracy_run_perf.main(["--model", str(tiny_nemo), "--engine", "onnx", clips[0]]) == 2
    assert "--engine 'onnx'" in capsys.readouterr().err


def test_a_device_with_nothing_to_measure_is_refused_before_any_model_loads():
    """--device auto resolved to an accelerator with --encoder-runtime onnxruntime alone: no
    configuration applies there; one line, and no model is loaded (the pool is never asked)."""
    from common.device.accelerators import DeviceChoice
    from common.errors import SetupError
    from common.measure.perf import PerfOptions, PerfSweep, run_perf

    sweep = PerfSweep(encoder_runtimes=("onnxruntime",))
    assert sweep.configs("cpu") and not sweep.configs("cuda:0")
    with pytest.raises(SetupError, match="nothing to measure on cuda:0"):
        run_perf([DeviceChoice("cpu", "test"), DeviceChoice("cuda:0", "test")], None, None, None, sweep,
                 PerfOptions(), 0.0, "test")


def test_the_default_benchmark_times_what_inference_runs(capsys, tiny_nemo, clips, tmp_path):
    """No --engine, no --batch-sizes: the batched engine with inference.py's batching ran (seen in
    the stage runs: only the batched engine has a decoding stage of its own), and the table says so."""
    from common.choices import BATCH_SECONDS, BATCH_SIZE, DEFAULT_ENGINE

    output = tmp_path / "perf.json"
    code = accuracy_run_perf.main(["--model", str(tiny_nemo), "--device", "cpu", "--runs", "1", "--warmup", "0",
                                   "--no-engine-check", "--output", str(output), *clips[:2]])
    table = capsys.readouterr().out
    doc = json.loads(output.read_text())
    assert code == 0 and len(doc["results"]) == 1
    result = doc["results"][0]
    import inference

    runs = inference.build_parser().parse_args(["a.wav"])  # what inference.py runs by default
    assert result["config"]["engine"] == runs.engine == DEFAULT_ENGINE == "batched"
    assert (result["config"]["batch_size"], result["config"]["batch_seconds"]) == (runs.batch_size, runs.batch_seconds)
    assert "decoding" in result["stages"][0], "the batched engine decodes in a stage of its own"
    assert [len(b) for b in result["batches"]] == [2]  # both clips in one batch of at most 16 files
    named = f"engine batched, batch ≤{BATCH_SIZE} files / ≤{BATCH_SECONDS:g} s"
    assert result["batching"] in named and f"ran: {named}" in table


def test_one_input_is_timed_alone_at_the_default_batching(tiny_nemo, clips):
    """The API's benchmark() batches as inference.py does too; with one input, a batch of at most
    16 files holds that input alone: a run is its latency."""
    from common.api import benchmark
    from common.choices import BATCH_SECONDS, BATCH_SIZE, DEFAULT_ENGINE

    result = benchmark(clips[0], model=str(tiny_nemo), devices=("cpu",), warmup=0, runs=2, stage_runs=0,
                       check_engines=False)
    (row,), (entry,) = result.rows, result.document["results"]
    assert (row.engine, row.batch_size, row.batch_seconds) == (DEFAULT_ENGINE, BATCH_SIZE, BATCH_SECONDS)
    assert entry["batches"] == [[{"index": 0, "duration": round(row.audio_seconds, 3)}]]
    assert row.rtfx == pytest.approx(row.audio_seconds / row.median_seconds, rel=0.01)
