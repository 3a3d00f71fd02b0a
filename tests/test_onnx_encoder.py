"""--encoder-runtime onnxruntime: the encoder exported by NeMo's export() and run by ONNX Runtime
gives NeMo's transcripts and timestamps, really runs (not the torch encoder), is exported once per
model and reused, and is refused where it cannot run."""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime/onnx not installed (pip install -r requirements-onnx.txt -c constraints.txt)")

DEMO_CLIPS = sorted(glob.glob(str(REPO / "demo" / "clips" / "*.wav")))[:12]


@pytest.fixture(scope="module")
def demo_pair():
    """The demo model twice: torch's encoder, and ONNX Runtime's."""
    from common import load_model

    return load_model("demo", device="cpu"), load_model("demo", device="cpu", encoder_runtime="onnxruntime")


def test_transcripts_and_timestamps_equal_nemo_transcribe(demo_pair):
    """Against NeMo's own model.transcribe() on the same files, and against the toolkit in torch;
    batches of several clips (padding inside ONNX Runtime's input) and of one."""
    from common.engine.transcriber import run_nemo_transcribe
    from common.inputs.audio import load_audio

    torch_model, onnx_model = demo_pair
    signals = [load_audio(path) for path in DEMO_CLIPS]
    nemo_texts = [h.text for h in run_nemo_transcribe(torch_model.loaded.model, signals)]
    batched = onnx_model.transcribe(DEMO_CLIPS, timestamps="word", batch_size=6)
    alone = [onnx_model.transcribe(path, timestamps="word") for path in DEMO_CLIPS[:3]]
    reference = torch_model.transcribe(DEMO_CLIPS, timestamps="word", batch_size=6)
    assert [r.text for r in batched] == nemo_texts
    assert [r.timestamps for r in batched] == [r.timestamps for r in reference]
    assert [(r.text, r.timestamps) for r in alone] == [(r.text, r.timestamps) for r in reference[:3]]
    assert any(r.text for r in batched)


def test_the_encoder_really_runs_in_onnxruntime(tmp_path, monkeypatch):
    """Once exported, the torch encoder's weights no longer matter: zeroed, the torch runtime
    loses the words and the ONNX Runtime one keeps them."""
    import torch

    from common import load_model

    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(tmp_path))
    model = load_model("demo", device="cpu", encoder_runtime="onnxruntime")
    before = model.transcribe(DEMO_CLIPS[0]).text
    assert before
    with torch.no_grad():
        for parameter in model.loaded.model.encoder.parameters():
            parameter.zero_()
    assert model.transcribe(DEMO_CLIPS[0]).text == before
    model.encoder_runtime = "torch"
    assert model.transcribe(DEMO_CLIPS[0]).text != before


def test_exported_once_and_reused(tmp_path, monkeypatch):
    """The export is published under the cache by a rename; a second load only opens it."""
    from common import load_model

    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(tmp_path))
    first = load_model("demo", device="cpu", encoder_runtime="onnxruntime").transcribe(DEMO_CLIPS[0]).text
    folders = os.listdir(tmp_path / "onnx-encoders")
    assert len(folders) == 1 and not folders[0].startswith("."), folders  # no temp folder left behind
    onnx_file = tmp_path / "onnx-encoders" / folders[0] / "encoder.onnx"
    written = os.stat(onnx_file).st_mtime_ns
    again = load_model("demo", device="cpu", encoder_runtime="onnxruntime").transcribe(DEMO_CLIPS[0]).text
    assert again == first and first
    assert os.listdir(tmp_path / "onnx-encoders") == folders and os.stat(onnx_file).st_mtime_ns == written


def test_the_cache_holds_onnxruntime_s_optimized_graph(tmp_path, monkeypatch):
    """What is cached is the graph after ONNX Runtime's optimizations (its fused kernels, of the
    com.microsoft domain), so that opening it later skips them: not NeMo's plain export."""
    import onnx

    from common import load_model

    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(tmp_path))
    load_model("demo", device="cpu", encoder_runtime="onnxruntime").transcribe(DEMO_CLIPS[0])
    (onnx_file,) = (tmp_path / "onnx-encoders").glob("*/encoder.onnx")
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    fused = {node.op_type for node in graph.node if node.domain == "com.microsoft"}
    assert fused, "no ONNX Runtime kernels in the cached graph"


def test_a_short_job_opens_its_session_without_prepacking(tmp_path, monkeypatch, capsys):
    """Prepacking the weights pays off over minutes of audio only: a one-clip run opens its
    session without it (in the background, while the model loads) and still gives torch's
    transcript; a job past the threshold prepacks."""
    import json

    import inference
    from common import load_model
    from common.engine import onnx_encoder

    opened = []
    real = onnx_encoder._new_session
    monkeypatch.setattr(onnx_encoder, "_new_session", lambda path, prepack: opened.append(prepack) or real(path, prepack))
    args = ["--model", "demo", "--audio", DEMO_CLIPS[0], "--encoder-runtime", "onnxruntime", "--json"]
    assert inference.main(args) == 0
    text = json.loads(capsys.readouterr().out)["results"][0]["text"]
    assert opened == [False] and text == load_model("demo", device="cpu").transcribe(DEMO_CLIPS[0]).text
    monkeypatch.setattr(onnx_encoder, "PREPACK_AFTER_SECONDS", 1.0)
    assert inference.main(args) == 0
    assert opened == [False, True]


@pytest.mark.parametrize("args, problem", [
    (["--dtype", "int8"], "fp32 only, not --dtype int8"),
    (["--dtype", "bf16"], "fp32 only, not --dtype bf16"),
    (["--device", "npu:0"], "CPU only, not npu:0"),
])
def test_refused_where_it_cannot_run(args, problem):
    proc = subprocess.run([sys.executable, "inference.py", "--model", "demo", "--encoder-runtime", "onnxruntime",
                           *args, DEMO_CLIPS[0]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert problem in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_resumes_only_with_the_runtime_it_was_made_with(tmp_path, capsys):
    """Records made by one encoder are not finished by the other: --resume of a run made with
    ONNX Runtime (its stream's settings as that run writes them) is refused in torch, naming it."""
    import json

    import inference
    from common.device.accelerators import resolve_device
    from common.engine.transcriber import TranscribeOptions
    from common.inputs.sources import collect_inputs
    from common.job.inference import InferenceJob, JobSettings
    from common.model.loading import resolve_model_source

    output = tmp_path / "out.json"
    made_with = InferenceJob(resolve_model_source("demo"), collect_inputs(DEMO_CLIPS[:1]),
                             lambda: resolve_device("cpu"),
                             JobSettings(TranscribeOptions(engine="nemo", encoder_runtime="onnxruntime"), "fast", None))
    (tmp_path / "out.json.partial.jsonl").write_text(
        json.dumps({"format": "parakeet-records/1", "settings": made_with.fingerprint()}) + "\n")
    code = inference.main(["--model", "demo", "--device", "cpu", "--engine", "nemo", "--output", str(output),
                           "--resume", DEMO_CLIPS[0]])
    assert code == 2 and "encoder_runtime" in capsys.readouterr().err and not output.exists()


def test_perf_sweeps_the_runtimes_side_by_side(tmp_path, monkeypatch, capsys):
    """accuracy_run_perf.py --encoder-runtime torch,onnxruntime: an ONNX Runtime row for the CPU fp32
    configuration only (int8 stays torch's), its encoder exported and run (the export lands in the
    cache), its transcripts checked against the other engine's and labelled in the table; a sweep
    where it can run nowhere is refused in one line."""
    import json

    import accuracy_run_perf

    output, cache = tmp_path / "perf.json", tmp_path / "cache"
    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(cache))
    code = accuracy_run_perf.main(["--model", "demo", "--audio", *DEMO_CLIPS[:2], "--engine", "batched",
                                   "--dtype", "fp32,int8", "--encoder-runtime", "torch,onnxruntime",
                                   "--warmup", "0", "--runs", "1", "--output", str(output)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    results = json.loads(output.read_text())["results"]
    assert [(r["config"]["dtype"], r["config"]["encoder_runtime"]) for r in results] == \
        [("fp32", "torch"), ("fp32", "onnxruntime"), ("int8", "torch")]
    assert results[1]["engine_check"]["identical"] is True
    assert len(list((cache / "onnx-encoders").glob("*/*.onnx"))) == 1
    assert any("onnxruntime" in line and line.startswith("cpu") for line in printed.out.splitlines())
    assert accuracy_run_perf.main(["--model", "demo", "--audio", DEMO_CLIPS[0], "--dtype", "bf16,int8",
                                   "--encoder-runtime", "torch,onnxruntime"]) == 2
    refused = capsys.readouterr().err
    assert "--encoder-runtime onnxruntime: fp32 only, not --dtype bf16" in refused and "Traceback" not in refused


def test_accuracy_run_compares_onnxruntime_with_the_torch_reference(tmp_path, monkeypatch, capsys):
    """accuracy_run.py --encoder-runtime onnxruntime: the target's encoder runs in ONNX Runtime (its
    export lands in the cache), the reference's in torch, and every file matches."""
    import json

    import accuracy_run

    output, cache = tmp_path / "accuracy.json", tmp_path / "cache"
    monkeypatch.setenv("PARAKEET_CACHE_DIR", str(cache))
    code = accuracy_run.main(["--model", "demo", "--audio", *DEMO_CLIPS[:4], "--device", "cpu",
                              "--encoder-runtime", "onnxruntime", "--output", str(output)])
    printed = capsys.readouterr()
    assert code == 0, printed.out[-2000:] + printed.err[-2000:]
    document = json.loads(output.read_text())
    assert document["target"]["encoder_runtime"] == "onnxruntime" and "encoder in onnxruntime" in printed.out
    assert document["accuracy"]["aggregate"]["exact_matches"] == document["accuracy"]["aggregate"]["compared"] == 4
    assert len(list((cache / "onnx-encoders").glob("*/*.onnx"))) == 1
