"""Every NPU code path, run through the real scripts on an emulated `npu` device
(tests/emulated_npu.py), each in its own process since installing the device is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest
from packaging.version import Version

from tests.conftest import REPO
from tests.emulated_npu import missing_api

MISSING = missing_api()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"emulated npu needs {MISSING}, absent in this torch")


def emulated(*argv, timeout=600, env=None):
    """Run a script (or -c code) with the emulated npu installed."""
    return subprocess.run([sys.executable, "-m", "tests.emulated_npu", *map(str, argv)], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env={**os.environ, **(env or {})})


def on_cpu(script, *argv):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, argv)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def cpu_reference(tiny_nemo, clips):
    proc = on_cpu("inference.py", "--model", tiny_nemo, "--device", "cpu", "--timestamps", "all", "--json", *clips[:2])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["results"]


# Runs inference.main() under the emulator with a global forward hook recording, per module class,
# the devices of the tensors going in and out and of the module's own parameters; prints them last.
PLACEMENT_PROBE = """
import collections, json, sys, torch
from tests.emulated_npu import install
install()
seen = collections.defaultdict(set)
def record(module, args, output):
    tensors = [t for t in torch.utils._pytree.tree_leaves((args, output)) if isinstance(t, torch.Tensor)]
    tensors += list(module.parameters(recurse=False))
    name = type(module).__name__
    if name == "Sequential" and any(isinstance(m, torch.nn.Conv2d) for m in module.children()):
        name = "ConvSubsampling.conv"  # NeMo 2.2's subsampling is a plain Sequential; "Sequential" = joint net
    seen[name].update(t.device.type for t in tensors)
torch.nn.modules.module.register_module_forward_hook(record)
import inference
code = inference.main(sys.argv[2:])
print("placement: " + json.dumps({name: sorted(devices) for name, devices in seen.items()}), file=sys.stderr)
sys.exit(code)
"""


def placement(stderr: str) -> dict:
    line = [line for line in stderr.splitlines() if line.startswith("placement: ")][-1]
    return json.loads(line.split(": ", 1)[1])


@pytest.mark.parametrize("extra, decoder_on", [(["--engine", "nemo"], "npu"), (["--engine", "batched"], "npu"),
                                               (["--engine", "batched", "--decoder-device", "cpu"], "cpu")])
def test_inference_on_npu_equals_cpu(tiny_nemo, clips, cpu_reference, extra, decoder_on):
    """Same texts and timestamps as the CPU, with the encoder really on the npu and the TDT decoder
    (embedding, LSTM) and joint network (Sequential) really where --decoder-device puts them."""
    proc = emulated("-c", PLACEMENT_PROBE, "--model", tiny_nemo, "--device", "npu:0", "--timestamps", "all", "--json",
                    *extra, *clips[:2])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["device"]["device"] == "npu:0" and doc["device"]["name"] == "Ascend910B4 (emulated)"
    for ours, reference in zip(doc["results"], cpu_reference):
        assert ours["device"] == "npu:0"
        assert ours["text"] == reference["text"]
        assert ours["timestamps"] == reference["timestamps"]
    devices = placement(proc.stderr)
    for encoder_part in ("AudioToMelSpectrogramPreprocessor", "ConvSubsampling", "ConformerLayer", "ConformerEncoder"):
        assert devices[encoder_part] == ["npu"], (encoder_part, devices)
    for decoder_part in ("Embedding", "LSTM", "Sequential"):
        assert devices[decoder_part] == [decoder_on], (decoder_part, devices)


def test_accuracy_npu_vs_cpu(tiny_nemo, clips, tmp_path):
    out = tmp_path / "acc.json"
    proc = emulated("accuracy_run.py", "--model", tiny_nemo, "--device", "npu:0", "--reference", "cpu",
                    "--output", out, *clips[:2])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads(out.read_text())
    assert doc["accuracy"]["aggregate"]["match_rate"] == 1.0 and doc["accuracy"]["aggregate"]["wer"] == 0.0
    assert doc["target"]["device"] == "npu:0" and doc["target"]["name"] == "Ascend910B4 (emulated)"
    assert "conv hf32 off" in doc["target"]["settings"] and "jit_compile=False" in doc["target"]["settings"]


@pytest.fixture(scope="module")
def npu_perf(tiny_nemo, clips, tmp_path_factory):
    """Decoder on the npu (both engines) vs on the cpu (batched), two files in batches of 1 and 2:
    one sweep, split by where the decoder ran."""
    out = tmp_path_factory.mktemp("npu-perf") / "perf.json"
    proc = emulated("accuracy_run_perf.py", "--model", tiny_nemo, "--device", "npu:0", "--warmup", "0", "--runs", "1",
                    "--batch-sizes", "1,2", "--engine", "batched,nemo", "--decoder-device", "same,cpu",
                    "--output", out, *clips[:2])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    results = json.loads(out.read_text())["results"]
    on_cpu = [r for r in results if r["config"].get("decoder_device") == "cpu"]
    assert on_cpu and len(on_cpu) < len(results), [r["config"] for r in results]
    return {"on_npu": {"results": [r for r in results if r not in on_cpu]}, "on_cpu": {"results": on_cpu}}


def test_perf_reports_host_syncs_per_stage(npu_perf):
    for result in npu_perf["on_npu"]["results"]:
        syncs = result["host_syncs"]
        assert syncs is not None, "the emulator's counters reach the report through common/device/counters.py"
        assert syncs["features"] == 0 and syncs["encoder"] == 0
        assert result["engine_check"]["identical"]
        decoding = syncs["decoding"] if result["config"]["engine"] == "batched" else syncs["other"]
        assert decoding > 2 * len(result["batches"]), "the TDT loop syncs the host at every label step"
        assert result["memory"]["kind"] == "npu allocated" and result["memory"]["peak"] > 0


def test_decoder_on_cpu_cuts_device_syncs_to_two_per_batch(npu_perf):
    batched_on_npu = {r["config"]["batch_size"]: r for r in npu_perf["on_npu"]["results"]
                     if r["config"]["engine"] == "batched"}
    for result in npu_perf["on_cpu"]["results"]:
        batches = len(result["batches"])
        syncs = result["host_syncs"]
        assert syncs["decoding"] == 0 and syncs["encoder"] == 0
        assert syncs["total"] <= 2 * batches
        same_config = batched_on_npu[result["config"]["batch_size"]]
        assert syncs["total"] < same_config["host_syncs"]["total"]
        assert result["texts"] == same_config["texts"]


def test_dry_run_sees_the_emulated_npu(tiny_nemo, clips):
    proc = emulated("check_accuracy_run_perf.py", "--dry-run", "--json", "--model", tiny_nemo, "--audio", clips[0])
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["torch_npu"]["status"] == "PASS"
    assert checks["npu devices"]["status"] == "PASS"
    assert checks["npu devices"]["value"].startswith("2: npu:0 Ascend910B4 (emulated)")


def test_full_smoke_chain_on_npu(tiny_nemo, clips, tmp_path):
    proc = emulated("check_accuracy_run_perf.py", "--model", tiny_nemo, "--device", "npu:0", "--runs", "1",
                    "--report-dir", tmp_path, "--audio", clips[0])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["stages"] == {"checks": "passed", "accuracy": "passed", "perf": "passed"}
    assert {load["device"] for load in doc["model_loads"]} == {"npu:0", "cpu"}
    assert [r["config"]["device"] for r in doc["perf"]["results"]] == ["npu:0", "cpu"]
    assert "| npu:0 |" in (tmp_path / "report.md").read_text()


def test_all_cards_smoke_chain_names_the_card_that_disagrees(tiny_nemo, clips, tmp_path):
    """--all-cards: accuracy and perf on npu:0 and npu:1 in turn, one CPU reference. Card 1's
    large matrix products are broken (EMULATED_NPU_FAULTY_CARDS), its 4x4 dry-run product is not."""
    proc = emulated("check_accuracy_run_perf.py", "--model", tiny_nemo, "--device", "npu", "--all-cards", "--runs", "1",
                    "--report-dir", tmp_path, "--audio", *clips[:2], env={"EMULATED_NPU_FAULTY_CARDS": "1"})
    assert proc.returncode == 1, proc.stderr + proc.stdout
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["stages"] == {"checks": "passed", "accuracy": "failed", "perf": "passed"}
    accuracy = doc["accuracy"]
    assert [(c["card"], c["verdict"]["passed"]) for c in accuracy["accuracy"]["cards"]] == [("npu:0", True), ("npu:1", False)]
    assert accuracy["summary"].endswith("cards: 1 of 2 agree, disagreeing: npu:1")
    assert [t["device"] for t in accuracy["targets"]] == ["npu:0", "npu:1"]
    assert [r["config"]["device"] for r in doc["perf"]["results"]] == ["npu:0", "npu:1", "cpu"]
    # the reference ran once: card 1 compared against card 0's reference sides, latencies included.
    # NeMo 2.2's own timestamp code raises on some of the broken card's degenerate outputs (hundreds
    # of one token, no offsets): such a file is card 1's error, which fails the card all the same.
    files = accuracy["accuracy"]["files"]
    card0 = {f["path"]: f["reference"] for f in files if f["card"] == "npu:0"}
    card1 = [f for f in files if f["card"] == "npu:1"]
    compared = [f for f in card1 if not f.get("error")]
    assert len(card0) == 2 and len(card1) == 2
    assert all(f["reference"] == card0[f["path"]] for f in compared)
    assert all("transcription failed (ValueError: `char_offsets`" in f["error"] for f in card1 if f.get("error"))
    if Version(version("nemo_toolkit")) >= Version("2.7"):
        assert len(compared) == 2
    assert sorted(p.name for p in tmp_path.glob("accuracy*.json")) == ["accuracy.json", "accuracy.npu0.json",
                                                                       "accuracy.npu1.json"]
    assert f"| npu:1 | {len(compared)} of 2 | 0 |" in (tmp_path / "report.md").read_text()


def test_strict_mode_catches_a_misplaced_tensor():
    code = ("import torch; from tests.emulated_npu import install; install(); "
            "a = torch.ones(3).to('npu'); print(float((a * torch.tensor(2.0)).sum()));"
            "a + torch.ones(3)")
    proc = emulated("-c", code)
    assert proc.returncode != 0
    assert proc.stdout.strip() == "6.0", "0-dim CPU scalars are allowed, as on real devices"
    assert "Expected all tensors to be on the same device" in proc.stderr and "npu:0 and cpu" in proc.stderr

