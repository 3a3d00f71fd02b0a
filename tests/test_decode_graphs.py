"""--decode-graphs: NeMo's TDT label looping replayed from npu graphs (common/engine/graph_decoding.py),
proved on the emulated npu, whose captures refuse what a real capture cannot hold
(tests/emulated_npu.py). Every script runs in its own process: installing the device is process-wide."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO
from tests.test_emulated_npu import MISSING, emulated

needs_emulator = pytest.mark.skipif(MISSING is not None, reason=f"emulated npu needs {MISSING}, absent in this torch")


def _nemo_has_graph_layout() -> bool:
    """NeMo 2.7+ (tdt_label_looping.py); NeMo 2.2 decodes eagerly with a warning (graph_decoding.LAYOUTS)."""
    import importlib.util

    try:
        return importlib.util.find_spec(
            "nemo.collections.asr.parts.submodules.transducer_decoding.tdt_label_looping") is not None
    except ModuleNotFoundError:
        return False


HAS_LAYOUT = _nemo_has_graph_layout()
needs_graphs = pytest.mark.skipif(not HAS_LAYOUT, reason="graph decoding is ported for NeMo 2.7+ only")
DEMO_CLIPS = sorted(str(p) for p in (REPO / "demo" / "clips").glob("*.wav"))
# long (7.2 s, 6.5 s) and short (demo clips of 2-4 s) inputs
MIXED = [str(REPO / "examples" / "sample.wav"), str(REPO / "examples" / "demo.wav"), *DEMO_CLIPS[:3]]

# Runs inference.main() under the emulator, then prints the emulator's graph counters on stderr.
COUNTING_PROBE = """
import json, sys
from tests.emulated_npu import install
npu = install()
{setup}
import inference
code = inference.main(sys.argv[2:])
print("graphs: " + json.dumps({{"replays": npu.counters.graph_replays, "captures": npu.counters.graph_captures}}),
      file=sys.stderr)
sys.exit(code)
"""


def run_inference(*argv, setup: str = ""):
    proc = emulated("-c", COUNTING_PROBE.format(setup=setup), "--model", "demo", "--device", "npu:0", "--json",
                    "--timestamps", "all", *argv)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("graphs: ")][-1]
    return json.loads(proc.stdout)["results"], json.loads(line.split(": ", 1)[1]), proc.stderr


def same_outputs(ours: list, reference: list) -> None:
    assert [r["text"] for r in ours] == [r["text"] for r in reference]
    for mine, theirs in zip(ours, reference):
        assert mine["timestamps"] == theirs["timestamps"], mine["path"]
    assert all(r["text"] for r in ours)


@pytest.fixture(scope="module")
def eager():
    results, graphs, _ = run_inference("--engine", "batched", "--batch-size", "4", "--decode-graphs", "off", *MIXED)
    assert graphs == {"replays": 0, "captures": 0}
    return results


@needs_graphs
@needs_emulator
@pytest.mark.parametrize("extra", [
    ["--engine", "batched", "--batch-size", "4"],  # long and short clips in one batch, and a batch of one after
    ["--engine", "batched", "--batch-size", "1"],  # every batch a batch of one
    ["--engine", "nemo", "--batch-size", "2"],  # NeMo's own transcribe() decodes through the same computer
], ids=["mixed-batch", "batches-of-one", "nemo-engine"])
def test_graphs_give_the_texts_and_timestamps_of_eager_decoding(eager, extra):
    results, graphs, stderr = run_inference(*extra, "--decode-graphs", "on", *MIXED)
    same_outputs(results, eager)
    assert graphs["replays"] > 0 and graphs["captures"] >= 4, "the decoding really ran from graphs"
    assert "warning: --decode-graphs" not in stderr


@needs_graphs
@needs_emulator
def test_auto_means_graphs_on_an_npu_that_has_them(eager):
    results, graphs, _ = run_inference("--engine", "batched", "--batch-size", "4", "--decode-graphs", "auto", *MIXED)
    same_outputs(results, eager)
    assert graphs["replays"] > 0


# A decoding step that reads a device value on the host, wrapped around NeMo's real step: the
# capture must refuse it as a real capture does.
INJECT_ITEM = """
from common.engine import graph_decoding
from nemo.collections.asr.parts.submodules.transducer_decoding import tdt_label_looping as looping
cls = looping.GreedyBatchedTDTLabelLoopingComputer
step = cls._inner_loop_step_find_next_non_blank
def with_item(self):
    self.state.advance_mask_any.item()
    return step(self)
cls._inner_loop_step_find_next_non_blank = with_item
"""


@needs_graphs
@needs_emulator
def test_a_host_sync_inside_a_captured_step_fails_the_capture_and_decoding_stays_eager(eager):
    results, graphs, stderr = run_inference("--engine", "batched", "--batch-size", "4", "--decode-graphs", "on",
                                            *MIXED, setup=INJECT_ITEM)
    same_outputs(results, eager)
    assert graphs["replays"] == 0
    warnings = [x for x in stderr.splitlines() if x.startswith("warning: --decode-graphs")]
    assert len(warnings) == 1, stderr
    assert "host synchronization" in warnings[0] and "decoding eagerly" in warnings[0]


@needs_emulator
def test_a_nemo_without_a_known_graph_layout_decodes_eagerly_with_one_warning(eager):
    results, graphs, stderr = run_inference("--engine", "batched", "--batch-size", "4", "--decode-graphs", "on",
                                            *MIXED, setup="from common.engine import graph_decoding\n"
                                                          "graph_decoding.LAYOUTS = ()")
    same_outputs(results, eager)
    assert graphs == {"replays": 0, "captures": 0}
    warnings = [x for x in stderr.splitlines() if x.startswith("warning: --decode-graphs")]
    assert len(warnings) == 1 and "no known graph layout" in warnings[0], stderr


@pytest.fixture(scope="module")
def graph_perf(tmp_path_factory):
    out = tmp_path_factory.mktemp("graph-perf") / "perf.json"
    proc = emulated("accuracy_run_perf.py", "--model", "demo", "--device", "npu:0", "--engine", "batched",
                    "--decode-graphs", "off,on", "--decoder-device", "same,cpu", "--batch-sizes", "1,4",
                    "--warmup", "1", "--runs", "1", "--output", out, *MIXED)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(out.read_text()), proc.stdout


@needs_graphs
@needs_emulator
def test_perf_sets_graphs_off_on_and_the_decoder_on_the_cpu_side_by_side(graph_perf):
    document, table = graph_perf
    rows = {(r["config"]["batch_size"], r["config"]["decode_graphs"], r["config"]["decoder_device"]): r
            for r in document["results"]}
    assert set(rows) == {(b, g, d) for b in (1, 4) for g, d in (("off", "npu:0"), ("on", "npu:0"), ("off", "cpu"))}
    for batch_size in (1, 4):
        eager, graphs, cpu = (rows[(batch_size, "off", "npu:0")], rows[(batch_size, "on", "npu:0")],
                              rows[(batch_size, "off", "cpu")])
        assert eager["texts"] == graphs["texts"] == cpu["texts"]
        per_second = {name: r["decoding_counts"]["per_audio_second"] for name, r in
                      (("eager", eager), ("graphs", graphs), ("cpu", cpu))}
        assert per_second["graphs"]["launches"] * 10 <= per_second["eager"]["launches"], per_second
        assert per_second["graphs"]["graph_replays"] > 0 and per_second["eager"]["graph_replays"] == 0
        # the loop conditions still reach the host: graphs cut launches, not syncs
        assert per_second["graphs"]["host_syncs"] == per_second["eager"]["host_syncs"] > 0
        assert per_second["cpu"]["launches"] == per_second["cpu"]["host_syncs"] == 0
        per_batch = graphs["decoding_counts"]["per_batch"]
        assert per_batch["launches"] == pytest.approx(graphs["decoding_counts"]["launches"] / len(graphs["batches"]),
                                                      abs=0.01)
    assert "launches/audio s" in table and "syncs/audio s" in table


def test_graphs_are_only_an_npu_matter():
    from common.device.graphs import graphs_wanted

    for mode in ("off", "on", "auto"):
        assert not graphs_wanted(mode, "cpu")
        assert not graphs_wanted(mode, "cuda:0"), "CUDA keeps NeMo's own CUDA graphs"
    assert graphs_wanted("on", "npu:0") and not graphs_wanted("off", "npu:0")
    with pytest.raises(ValueError):
        graphs_wanted("sometimes", "npu:0")


def test_length_buckets_double_from_nemos_30_seconds():
    from common.engine.graph_decoding import length_bucket

    assert [length_bucket(n) for n in (1, 375, 376, 750, 751, 7500)] == [375, 375, 750, 750, 1500, 12000]


def test_the_cpu_path_is_unchanged_whatever_the_option(capfd):
    """On the CPU --decode-graphs changes nothing: same hypotheses, NeMo's graph mode untouched,
    nothing captured, nothing said."""
    from common.engine.batched import tdt_loop
    from common.engine.transcriber import TranscribeOptions, transcribe_signals
    from common.inputs.sources import collect_inputs, read_signal
    from common.model.loading import load_model

    loaded = load_model("demo", "cpu", timestamps=True)
    signals = [read_signal(item) for item in collect_inputs(MIXED[1:4])]
    outputs = {}
    for mode in ("off", "on", "auto"):
        options = TranscribeOptions(batch_size=3, engine="batched", decode_graphs=mode, timestamp_kinds=("word",))
        outputs[mode] = [(t.text, t.timestamps) for t in transcribe_signals(loaded, signals, options)]
    assert outputs["on"] == outputs["auto"] == outputs["off"]
    computer, _ = tdt_loop(loaded.model)
    assert computer.cuda_graphs_mode is None and computer.state is None
    assert computer.parakeet_graphs.captures == {} and computer.parakeet_graphs.failed is None
    assert "--decode-graphs" not in capfd.readouterr().err


def test_nemo_2_7_and_later_have_the_graph_layout():
    from common.engine.batched import tdt_loop
    from common.engine.graph_decoding import loop_layout
    from common.model.loading import load_model

    computer, _ = tdt_loop(load_model("demo", "cpu").model)
    assert (loop_layout(computer) is not None) == HAS_LAYOUT


@needs_emulator
@pytest.mark.skipif(HAS_LAYOUT, reason="this NeMo has the graph layout")
def test_older_nemo_decodes_eagerly_with_one_warning(eager):
    results, graphs, stderr = run_inference("--engine", "batched", "--batch-size", "4", "--decode-graphs", "on", *MIXED)
    same_outputs(results, eager)
    assert graphs == {"replays": 0, "captures": 0}
    assert len([x for x in stderr.splitlines() if x.startswith("warning: --decode-graphs")]) == 1, stderr


EMULATOR_CAPTURE = r"""
import torch
from tests.emulated_npu import CaptureError, install
npu = install()
x = torch.zeros(4, device="npu:0")
refused = {}
attempts = {
    "item": lambda: x.sum().item(),
    "item under inference_mode": lambda: torch.inference_mode()(lambda: x.sum().item())(),
    "bool": lambda: bool(x.any()),
    "tolist": lambda: x.tolist(),
    "nonzero": lambda: x.nonzero(),
    "to host": lambda: x.cpu(),
    "from host": lambda: x.copy_(torch.ones(4)),
    "host tensor": lambda: torch.tensor([1.0, 2.0, 3.0, 4.0], device="npu:0"),
    "synchronize": lambda: torch.npu.synchronize(),
}
for name, attempt in attempts.items():
    try:
        with torch.npu.graph(torch.npu.NPUGraph()):
            attempt()
        refused[name] = False
    except CaptureError:
        refused[name] = True
x.sum().item()  # outside a capture again: allowed
# A replay redoes the recorded device ops on the recorded tensors, not the Python that made them.
weights, out, flag = torch.full((4,), 2.0, device="npu:0"), torch.zeros(4, device="npu:0"), {"double": True}
graph = torch.npu.NPUGraph()
with torch.npu.graph(graph):
    out.copy_(x * weights if flag["double"] else x)
flag["double"] = False
x.fill_(3.0)
ops = npu.counters.ops
graph.replay()
launches = npu.counters.ops - ops
print(json.dumps({"refused": refused, "out": out.cpu().tolist(), "launches": launches}))
"""


@needs_emulator
def test_the_emulated_capture_is_strict_and_a_replay_is_one_launch():
    proc = emulated("-c", "import json\n" + EMULATOR_CAPTURE)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(result["refused"].values()), result["refused"]
    assert result["out"] == [6.0] * 4, "the replay ran the captured ops on the new input"
    assert result["launches"] == 1
