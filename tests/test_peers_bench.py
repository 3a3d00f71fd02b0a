"""bench/peers_bench.py --smoke on the demo model, in a subprocess: the peers load NeMo's own
export of the model, every contender transcribes, onnx-asr at fp32 writes the toolkit's fp32
transcripts word for word, and the timings and the ratio table are there.

Needs the bench requirements (pip install -r requirements-bench.txt -c constraints.txt); without
them it skips, saying which import failed. About a minute on 2 cores (export included)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
import sys

import pytest

from tests.conftest import REPO

INSTALL = "pip install -r requirements-bench.txt -c constraints.txt"
for module in ("onnx", "onnxruntime", "onnx_asr", "sherpa_onnx", "jiwer"):
    pytest.importorskip(module, reason=f"bench/peers_bench.py needs {module}: {INSTALL}")

pytestmark = pytest.mark.slow

CONTENDERS = {"toolkit fp32", "toolkit fp32+onnxruntime", "onnx-asr fp32", "onnx-asr int8", "sherpa-onnx fp32", "sherpa-onnx int8"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("peers")
    command = [sys.executable, str(REPO / "bench" / "peers_bench.py"), "--smoke", "--export-dir", str(out / "exports"),
               "--output", str(out / "peers.json")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"peers_bench.py --smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return {"doc": json.loads((out / "peers.json").read_text(encoding="utf-8")), "stdout": proc.stdout,
            "export_dir": out / "exports", "cache_dir": os.environ.get("PARAKEET_CACHE_DIR")}


def test_the_scripts_cache_in_the_test_run_not_in_the_user_s_cache(smoke, tmp_path_factory):
    """A module-scoped fixture's script (the ONNX and int8 encoders it caches) must already see the
    test run's cache folder (conftest's session-scoped _isolated_cache)."""
    assert smoke["cache_dir"] and Path(smoke["cache_dir"]).is_relative_to(tmp_path_factory.getbasetemp())


def rows(doc: dict, part: str) -> dict:
    return {row["contender"]: row for row in doc[part]["rows"]}


def test_every_contender_transcribes(smoke):
    doc = smoke["doc"]
    assert doc["skipped"] == []
    names = {c["name"] for c in doc["contenders"]}
    assert CONTENDERS <= names, names
    assert doc["set"]["files"], "the smoke set is empty"
    for part, count in (("clip", 1), ("set", len(doc["set"]["files"]))):
        for name, row in rows(doc, part).items():
            assert "error" not in row, (part, name, row.get("error"))
            assert len(row["texts"]) == count, (part, name)
            assert all(text.strip() for text in row["texts"]), (part, name, row["texts"])  # real speech, real model


def test_onnx_asr_fp32_writes_the_toolkit_fp32_transcripts(smoke):
    """Same export, same features (onnx-asr's nemo80 front end), same greedy TDT decoding: equal
    text on every clip (the demo model's 21/21). A wrong vocabulary, feature size or duration
    handling in the export breaks this."""
    doc = smoke["doc"]
    for part in ("clip", "set"):
        row = rows(doc, part)["onnx-asr fp32"]
        assert row["equal_to_toolkit_fp32"] == row["compared"] == len(row["texts"]), (part, row)
        assert row["texts"] == rows(doc, part)["toolkit fp32"]["texts"]
        assert row["wer_vs_toolkit_fp32"] == 0


def test_the_toolkit_with_onnxruntime_writes_its_fp32_transcripts(smoke):
    doc = smoke["doc"]
    for part in ("clip", "set"):
        assert rows(doc, part)["toolkit fp32+onnxruntime"]["texts"] == rows(doc, part)["toolkit fp32"]["texts"]


def test_every_peer_is_close_to_the_toolkit(smoke):
    """sherpa-onnx's own fbank front end and int8 weights change some words, not most: over the
    clip and the set together, a WER of 0.35 against the toolkit fp32 texts is far above what they
    cost on the demo model (about 0.1-0.15) and far below a wrong token table (about 1). One clip
    alone can differ more (the demo model is small): the bound is on the total."""
    summary = smoke["doc"]["transcripts_vs_reference"]
    assert CONTENDERS <= set(summary)
    for name, entry in summary.items():
        assert entry["compared"] == 1 + len(smoke["doc"]["set"]["files"]), name
        assert entry["wer"] < 0.35, (name, entry)


def test_timings_ratios_and_table(smoke):
    doc = smoke["doc"]
    assert doc["threads"] >= 1 and doc["runs"] == 1 and doc["warmup"] == 1
    for part in ("clip", "set"):
        audio = doc[part]["audio_seconds"]
        assert audio > 0
        for name, row in rows(doc, part).items():
            assert row["median_s"] > 0 and len(row["times_s"]) == 1, (part, name)
            assert row["rtfx"] == pytest.approx(audio / row["median_s"], rel=0.02)
            assert row["speed_vs_toolkit_fp32"] > 0 and row["speed_vs_fastest_peer_same_class"] > 0
        assert rows(doc, part)["toolkit fp32"]["speed_vs_toolkit_fp32"] == 1.0
        # the fastest peer of each class is its own reference
        for row in rows(doc, part).values():
            if row["family"] != "toolkit" and row["fastest_peer_same_class"] == row["contender"]:
                assert row["speed_vs_fastest_peer_same_class"] == 1.0
    for name in CONTENDERS:
        assert name in doc["table"] and name in smoke["stdout"]
    assert "what_is_timed" in doc and "toolkit: Model.transcribe" in doc["what_is_timed"]


def test_exports_are_cached_and_reused(smoke):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import peers_bench
    finally:
        sys.path.remove(str(REPO / "bench"))
    first = smoke["doc"]["exports"]
    assert first["reused"] is False
    again = peers_bench.ensure_exports("demo", smoke["export_dir"])
    assert again["reused"] is True and again["folder"] == first["folder"]
    assert not [p for p in smoke["export_dir"].iterdir() if p.name.startswith(f".{again['folder'].split('/')[-1]}")]
    names = set(first["files"])
    for expected in ("onnx-asr/encoder-model.onnx", "onnx-asr/decoder_joint-model.int8.onnx", "onnx-asr/vocab.txt",
                     "onnx-asr/config.json", "sherpa-onnx/encoder.int8.onnx", "sherpa-onnx/joiner.onnx",
                     "sherpa-onnx/tokens.txt"):
        assert expected in names, expected


def test_isolate_runs_every_call_in_a_process_of_its_own(smoke):
    """--isolate: each contender's call, every round, in a child process that loads it alone; the
    transcripts are the in-process run's (same exports, reused)."""
    out = smoke["export_dir"].parent / "isolated.json"
    command = [sys.executable, str(REPO / "bench" / "peers_bench.py"), "--smoke", "--isolate", "--warmup", "0",
               "--runs", "2", "--set", "none", "--toolkit-dtypes", "fp32", "--peers", "onnx-asr", "--peer-dtypes",
               "fp32", "--export-dir", str(smoke["export_dir"]), "--output", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"peers_bench.py --isolate failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["isolate"] is True and doc["exports"]["reused"] is True
    isolated = rows(doc, "clip")
    assert set(isolated) == {"toolkit fp32", "onnx-asr fp32"}
    pids = [pid for row in isolated.values() for pid in row["child_pids"]]
    assert len(pids) == 4 and len(set(pids)) == 4 and doc["pid"] not in pids, pids
    for name, row in isolated.items():
        assert len(row["times_s"]) == 2, name
        assert row["texts"] == rows(smoke["doc"], "clip")[name]["texts"], name
    assert {c["name"]: c["load_seconds"] > 0 for c in doc["contenders"]} == {name: True for name in isolated}
