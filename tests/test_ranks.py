"""Every card of a host with torchrun: the real scripts under `python -m torch.distributed.run
--nproc-per-node 2` on this CPU (gloo), and on two emulated npu cards. The merged output must
equal a single-process run's; a rank killed mid-way keeps what it finished and --resume, with
another number of ranks, completes the set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.outputs.stream import rank_stream_path, stream_family
from common.ranks.world import World, rank_threads, shard_by_duration, world_from_env
from tests.conftest import REPO
from tests.emulated_npu import missing_api

DEMO_CLIPS = sorted(str(p) for p in (REPO / "demo" / "clips").glob("*.wav"))[:8]


def torchrun(*argv, nproc=2, module=False, timeout=300, wait=True, env=None, launcher=()):
    """`python -m torch.distributed.run --nproc-per-node N [launcher options]` with a free port,
    in the repository."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(_free_port()), *launcher, *(["-m"] if module else []), *map(str, argv)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environment, start_new_session=True)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=environment)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(name, *argv, timeout=300):
    return subprocess.run([sys.executable, str(REPO / name), *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def transcripts(document: dict) -> list:
    return [(r["path"], r["text"], r.get("timestamps")) for r in document["results"]]


# ------------------------------------------------------------------ pure parts


def test_shards_are_balanced_by_duration_longest_first_not_round_robin():
    durations = [10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    shares = shard_by_duration(list(range(11)), durations, 2)
    assert shares == [[0], list(range(1, 11))]  # round robin would give rank 0 15 s, rank 1 5 s
    assert sorted(i for s in shares for i in s) == list(range(11))
    lengths = [i % 7 + 0.5 for i in range(20)]
    loads = [sum(lengths[i] for i in share) for share in shard_by_duration(list(range(20)), lengths, 3)]
    assert max(loads) - min(loads) <= max(lengths)  # never more than one input apart


def test_the_world_comes_from_torchruns_environment():
    assert world_from_env({}) == World()
    world = world_from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.local_rank, world.size, world.local_size, world.ranked) == (3, 1, 4, 2, True)
    assert rank_threads(world, {"PARAKEET_RANK_THREADS": "3"}) == 3
    assert rank_threads(World(0, 0, 8, 8), {}) >= 1


def test_resume_reads_the_streams_of_every_world_size(tmp_path):
    base = tmp_path / "out.json.partial.jsonl"
    for path in (base, rank_stream_path(base, 0), rank_stream_path(base, 11), tmp_path / "other.json.rank0.partial.jsonl"):
        path.write_text("")
    assert [p.name for p in stream_family(base)] == [
        "out.json.partial.jsonl", "out.json.rank0.partial.jsonl", "out.json.rank11.partial.jsonl"]


# ------------------------------------------------------------------ the scripts under torchrun


def test_two_ranks_merge_to_the_single_process_output(tmp_path):
    single, merged = tmp_path / "single.json", tmp_path / "merged.json"
    proc = script("inference.py", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--json",
                  "--output", single, *DEMO_CLIPS)
    assert proc.returncode == 0, proc.stderr
    proc = torchrun("inference.py", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--json",
                    "--output", merged, *DEMO_CLIPS)
    assert proc.returncode == 0, proc.stderr
    one, two = json.loads(single.read_text()), json.loads(merged.read_text())
    assert transcripts(two) == transcripts(one)  # texts, word timestamps and input order
    ranks = two["device"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["backend"] == "gloo" for r in ranks)
    assert sum(r["inputs"] for r in ranks) == len(DEMO_CLIPS) and all(r["inputs"] for r in ranks)
    assert all(r["threads"] >= 1 for r in ranks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.json", "single.json"], "rank streams left behind"


@pytest.fixture(scope="module")
def many(tmp_path_factory, clips) -> list[str]:
    folder = tmp_path_factory.mktemp("many")
    paths = []
    for n in range(24):
        path = folder / f"take{n:02d}.wav"
        shutil.copy(clips[n % len(clips)], path)
        paths.append(str(path))
    return paths


def _records(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines()[1:] if line.endswith("}"))


def _rank_pid(parent: int, rank: int) -> int | None:
    """The worker of `rank` among the launcher's children (its environment says RANK)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def _kill_rank_1_midway(output: Path, *argv, launcher=()) -> tuple[subprocess.Popen, str]:
    """torchrun inference.py; SIGKILL rank 1's worker once its stream holds two records. The
    launcher's return code and stderr."""
    stream1 = rank_stream_path(Path(str(output) + ".partial.jsonl"), 1)
    run = torchrun("inference.py", *argv, "--output", output, wait=False, launcher=launcher)
    try:
        deadline = time.time() + 240
        while _records(stream1) < 2 and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        victim = _rank_pid(run.pid, 1)
        assert victim is not None, "rank 1's worker not found"
        os.kill(victim, signal.SIGKILL)
        _, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    return run, err


def test_a_killed_rank_loses_only_its_batch_in_flight_and_resume_completes(tiny_nemo, many, tmp_path):
    args = ["--model", tiny_nemo, "--device", "cpu", "--engine", "nemo", "--batch-size", "1", "--json"]
    reference = tmp_path / "reference.json"
    proc = script("inference.py", *args, "--output", reference, *many)
    assert proc.returncode == 0, proc.stderr
    output = tmp_path / "run.json"
    run, err = _kill_rank_1_midway(output, *args, *many)
    assert run.returncode != 0
    assert "rank      : 1" in err or "rank: 1" in err.replace("  ", " "), err[-2000:]  # torchrun names the rank
    assert not output.exists()
    kept = sum(_records(p) for p in stream_family(Path(str(output) + ".partial.jsonl")))
    assert 2 <= kept < len(many), f"{kept} records kept: the kill came too late to test anything"
    # resume with another world size: one process reads both ranks' streams and runs the rest
    proc = script("inference.py", *args, "--output", output, "--resume", *many)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming: {kept} of {len(many)}" in proc.stderr
    assert transcripts(json.loads(output.read_text())) == transcripts(json.loads(reference.read_text()))
    assert stream_family(Path(str(output) + ".partial.jsonl")) == [], "streams left after a complete run"


def test_with_max_restarts_a_killed_rank_costs_only_its_batch_and_the_same_command_completes(tiny_nemo, many, tmp_path):
    """torchrun --max-restarts restarts the whole group after a rank dies; the new attempt
    resumes from every rank's stream by itself (and meets on its own store keys, not the dead
    attempt's)."""
    args = ["--model", tiny_nemo, "--device", "cpu", "--engine", "nemo", "--batch-size", "1", "--json"]
    reference = tmp_path / "reference.json"
    proc = script("inference.py", *args, "--output", reference, *many)
    assert proc.returncode == 0, proc.stderr
    output = tmp_path / "run.json"
    run, err = _kill_rank_1_midway(output, *args, *many, launcher=("--max-restarts", "1"))
    assert run.returncode == 0, err[-3000:]
    assert "restart 1 of the group: resuming" in err
    resumed = [line for line in err.splitlines() if "resuming:" in line and "input(s) already done" in line]
    assert resumed and all(int(line.split("resuming: ")[1].split()[0]) >= 2 for line in resumed), err[-3000:]
    assert transcripts(json.loads(output.read_text())) == transcripts(json.loads(reference.read_text()))
    assert stream_family(Path(str(output) + ".partial.jsonl")) == [], "streams left after a complete run"


def test_accuracy_across_ranks_has_a_verdict_per_card(tmp_path):
    output = tmp_path / "accuracy.json"
    proc = torchrun("accuracy_run.py", "--model", "demo", "--device", "cpu", "--dtype", "bf16", "--min-match", "0",
                    "--max-wer", "1", "--warmup", "0", "--output", output, *DEMO_CLIPS[:6])
    assert proc.returncode == 0, proc.stderr
    document = json.loads(output.read_text())
    cards = document["accuracy"]["cards"]
    assert [c["card"] for c in cards] == ["cpu/rank0", "cpu/rank1"] and all(c["verdict"]["passed"] for c in cards)
    assert sum(c["aggregate"]["files"] for c in cards) == document["accuracy"]["aggregate"]["files"] == 6
    assert [r["rank"] for r in document["ranks"]] == [0, 1]
    assert "cards: 2 of 2 agree" in document["summary"]
    # each file's reference was computed once, on the rank that compared it
    assert all(f["reference"]["latency"] is not None for f in document["accuracy"]["files"])


def test_perf_across_ranks_reports_each_rank_and_the_aggregate(tmp_path):
    output = tmp_path / "perf.json"
    proc = torchrun("accuracy_run_perf.py", "--model", "demo", "--device", "cpu", "--engine", "batched",
                    "--warmup", "0", "--runs", "1", "--no-engine-check", "--output", output, *DEMO_CLIPS[:6])
    assert proc.returncode == 0, proc.stderr
    document = json.loads(output.read_text())
    ranks, aggregate = document["ranks"], document["aggregate"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["rtfx"] > 0 and r["threads"] >= 1 for r in ranks)
    assert sorted(p for r in ranks for p in r["inputs"]) == sorted(DEMO_CLIPS[:6])
    assert aggregate["ranks"] == 2 and aggregate["throughput"] > 0 and aggregate["one_rank"]["throughput"] > 0
    assert aggregate["scaling_efficiency"] == pytest.approx(aggregate["throughput"] / (2 * aggregate["one_rank"]["throughput"]), rel=0.01)
    assert "aggregate (2 ranks" in proc.stdout


@pytest.mark.skipif(missing_api() is not None, reason="emulated npu needs a newer torch")
def test_two_ranks_run_on_two_emulated_cards(tmp_path):
    single, merged = tmp_path / "cpu.json", tmp_path / "npu.json"
    clips = DEMO_CLIPS[:4]
    proc = script("inference.py", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--json",
                  "--output", single, *clips)
    assert proc.returncode == 0, proc.stderr
    proc = torchrun("tests.emulated_npu", "inference.py", "--model", "demo", "--device", "npu", "--timestamps",
                    "word", "--json", "--output", merged, *clips, module=True)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(merged.read_text())
    assert transcripts(document) == transcripts(json.loads(single.read_text()))
    assert sorted({r["device"] for r in document["results"]}) == ["npu:0", "npu:1"]
    assert [(r["device"], r["backend"]) for r in document["device"]["ranks"]] == [("npu:0", "gloo"), ("npu:1", "gloo")]


def test_a_ranked_resume_with_other_settings_is_refused_and_the_streams_kept(tmp_path):
    """The streams' settings check (outputs/stream.read_family, its one home) on the torchrun path:
    the rank streams of a run with word timestamps are not resumed without them."""
    output = tmp_path / "out.json"
    proc = torchrun("inference.py", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--json",
                    "--output", output, *DEMO_CLIPS[:4], tmp_path / "missing.wav")
    assert proc.returncode != 0 and "missing.wav: no such file" in proc.stderr, proc.stderr[-2000:]
    streams = stream_family(Path(f"{output}.partial.jsonl"))
    assert len(streams) == 2 and sum(_records(s) for s in streams) == 4  # a failed input: the streams stay
    kept = [s.read_bytes() for s in streams] + [output.read_bytes()]
    proc = torchrun("inference.py", "--model", "demo", "--device", "cpu", "--json", "--output", output, "--resume",
                    *DEMO_CLIPS[:4], tmp_path / "missing.wav")
    assert proc.returncode != 0 and "exitcode  : 2" in proc.stderr, proc.stderr[-2000:]  # each rank: a setup error
    assert "was written with other settings: timestamps was ['word'], now []" in proc.stderr, proc.stderr[-2000:]
    assert [s.read_bytes() for s in streams] + [output.read_bytes()] == kept


def test_a_fixed_card_under_torchrun_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "inference.py"), "--model", "demo", "--device", "npu:1",
                           "--output", tmp_path / "x.json", DEMO_CLIPS[0]], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--device npu:1: under torchrun every rank takes its own card" in proc.stderr


@pytest.mark.skipif(missing_api() is not None, reason="emulated npu needs a newer torch")
def test_the_dry_run_lists_every_visible_card_and_the_torchrun_command():
    proc = subprocess.run([sys.executable, "-m", "tests.emulated_npu", "check_accuracy_run_perf.py", "--dry-run",
                           "--model", "demo", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ASCEND_RT_VISIBLE_DEVICES": "0,2,5"})
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["cards"]["value"] == "3 visible (visible devices '0,2,5')"
    for card in ("npu:0", "npu:1", "npu:2"):
        assert checks[f"card {card}"]["status"] == "PASS" and "4x4 matmul ok" in checks[f"card {card}"]["value"]
        assert "Ascend910B4 (emulated), 32.0 of 32.0 GiB free" in checks[f"card {card}"]["value"]
    assert "card npu:3" not in checks
    assert checks["hccl"]["status"] == "WARN"  # the emulator has no HCCL: its ranks coordinate over gloo
    assert checks["torchrun"]["value"].startswith("torchrun --nproc-per-node 3 ")
