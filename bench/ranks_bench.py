#!/usr/bin/env python3
"""2 ranks x 1 thread (torchrun) against 1 rank x 2 threads, side by side in one invocation,
on the same clip set, the same model and the same timing rule.

Both are accuracy_run_perf.py runs (batched engine, batch 1, one warm-up pass, --runs timed
passes over the whole set). Throughput = audio seconds of those passes / wall seconds they took:
  1 rank x 2 threads  one process (OMP_NUM_THREADS=2), the sum of its timed passes;
  2 ranks x 1 thread  torchrun --nproc-per-node 2 (PARAKEET_RANK_THREADS=1): each rank on its
                      duration-balanced share, from the common start barrier to the last rank's
                      finish; its own baseline (rank 0 alone, 1 thread) gives the scaling efficiency.
  1 rank x 1 thread   one process (OMP_NUM_THREADS=1), for reference, run last.
Transcripts are not compared here (tests/test_ranks.py does that).

  python bench/ranks_bench.py --model demo --audio demo/clips/manifest.jsonl --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def perf(args, out: Path, ranks: int, threads: int = 2) -> dict:
    common = ["--model", args.model, "--device", "cpu", "--engine", "batched", "--batch-sizes", "1", "--warmup", "1",
              "--runs", str(args.runs), "--no-engine-check", "--output", str(out), *args.audio]
    script = str(REPO / "accuracy_run_perf.py")
    if ranks == 1:
        command, env = [sys.executable, script, *common], {"OMP_NUM_THREADS": str(threads)}
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), script, *common]
        env = {"PARAKEET_RANK_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode:
        sys.exit(f"failed ({ranks} rank(s)): {proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--audio", nargs="+", default=[str(REPO / "demo" / "clips" / "manifest.jsonl")])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = perf(args, Path(folder) / "one.json", 1)
        two = perf(args, Path(folder) / "two.json", 2)
        thin = perf(args, Path(folder) / "thin.json", 1, threads=1)
    result = one["results"][0]
    audio = result["audio_seconds"] * args.runs

    def row(document: dict, setup: str) -> dict:
        timed = document["results"][0]
        return {"setup": setup, "audio_seconds": round(audio, 2), "wall_seconds": round(sum(timed["latencies"]), 3),
                "throughput": round(audio / sum(timed["latencies"]), 2), "rtfx_median_pass": timed["rtfx"]}

    single, alone = row(one, "1 rank x 2 threads"), row(thin, "1 rank x 1 thread")
    agg = two["aggregate"]
    double = {"setup": "2 ranks x 1 thread", "audio_seconds": agg["audio_seconds"], "wall_seconds": agg["wall_seconds"],
              "throughput": agg["throughput"], "per_rank_rtfx": [r["rtfx"] for r in two["ranks"]],
              "one_rank_1_thread": agg["one_rank"]["throughput"], "scaling_efficiency": agg["scaling_efficiency"]}
    report = {"model": args.model, "inputs": len(one["inputs"]), "runs": args.runs, "cores": os.cpu_count(),
              "single": single, "single_1_thread": alone, "ranks": double, "ratio": round(double["throughput"] / single["throughput"], 3)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['inputs']} clips, {result['audio_seconds']:.1f} s of audio, {args.runs} timed pass(es), model {args.model}")
    print(f"{'setup':<20} {'audio s':>8} {'wall s':>8} {'audio s/s':>10}")
    for entry in (single, alone, double):
        print(f"{entry['setup']:<20} {entry['audio_seconds']:>8.1f} {entry['wall_seconds']:>8.2f} {entry['throughput']:>10.2f}")
    print(f"2x1 / 1x2 = {report['ratio']:.2f}; per-rank RTFx {double['per_rank_rtfx']}; one rank x 1 thread "
          f"{double['one_rank_1_thread']:.2f} audio s/s, scaling efficiency of 2 ranks over it "
          f"{double['scaling_efficiency']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
