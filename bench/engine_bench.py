#!/usr/bin/env python3
"""The fast engine against the naive NeMo path, side by side in one run, on one machine.

What is timed (wall clock; the device is synchronized before every clock read):
  load        ASRModel.restore_from() vs our loader with an empty extraction cache (first use)
              and with a filled one; parameters compared for equality.
  first       whole process, start to first transcript of the 7.4 s clip, in fresh
              subprocesses: `import nemo; restore_from(); transcribe()` vs `inference.py`.
  clip        warm latency of the 7.4 s clip, in-memory array in, text out (median of --runs
              after a warm-up): model.transcribe() vs our batched engine, fp32 and bf16.
  set         throughput over the clip set (in-memory arrays, all clips once per run):
              model.transcribe(batch_size=4) at fp32 vs our batched engine over a sweep of
              audio-seconds budgets, fp32 and bf16.
Transcripts of every configuration are compared with model.transcribe() at fp32.

  python bench/make_clips.py --out bench/clips
  python bench/engine_bench.py --model random:parakeet --clip examples/sample.wav --set bench/clips/manifest.jsonl
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from common.files import write_json_atomic  # noqa: E402


def median_seconds(fn, warmup: int, runs: int) -> tuple[float, list[float], object]:
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def bench_load(nemo_path: str) -> dict:
    import torch

    from common.model import fast_load
    from common.model.loading import import_nemo_asr

    ASRModel = import_nemo_asr().models.ASRModel
    folder, _ = fast_load.extracted_folder(nemo_path)
    shutil.rmtree(folder)
    start = time.perf_counter()
    ours, reused = fast_load.fast_restore(nemo_path)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    ours, reused_again = fast_load.fast_restore(nemo_path)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    theirs = ASRModel.restore_from(nemo_path, map_location="cpu").eval()
    nemo = time.perf_counter() - start
    a, b = ours.state_dict(), theirs.state_dict()
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    del ours, theirs, a, b
    gc.collect()
    return {"nemo_restore_from_s": round(nemo, 3), "ours_empty_cache_s": round(cold, 3),
            "ours_cached_s": round(warm, 3), "speedup_cached": round(nemo / warm, 1),
            "speedup_empty_cache": round(nemo / cold, 2), "cache_reused": [reused, reused_again],
            "identical_parameters": same}


def bench_first_transcript(nemo_path: str, clip: str) -> dict:
    naive = ("import nemo.collections.asr as a, soundfile as sf; "
             f"m = a.models.ASRModel.restore_from({nemo_path!r}, map_location='cpu').eval(); "
             f"print(m.transcribe([{clip!r}], verbose=False)[0].text)")
    commands = {"naive_nemo": [sys.executable, "-c", naive],
                "ours": [sys.executable, os.path.join(REPO, "inference.py"), "--model", nemo_path, "--device", "cpu",
                         "--audio", clip]}
    result = {}
    for name, command in commands.items():
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed: {proc.stderr[-2000:]}")
        result[name] = {"seconds": round(seconds, 2), "text": proc.stdout.strip().splitlines()[-1]}
    result["speedup"] = round(result["naive_nemo"]["seconds"] / result["ours"]["seconds"], 2)
    result["same_text"] = result["naive_nemo"]["text"] == result["ours"]["text"]
    return result


def bench_clip(loaded, signal, warmup: int, runs: int) -> list[dict]:
    from common.engine.transcriber import TranscribeOptions, transcribe_signals

    duration = len(signal) / 16000
    rows, reference = [], None
    for engine, dtype in (("nemo", "fp32"), ("batched", "fp32"), ("nemo", "bf16"), ("batched", "bf16")):
        options = TranscribeOptions(engine=engine, dtype=dtype)
        median, times, transcripts = median_seconds(lambda: transcribe_signals(loaded, [signal], options),
                                                    warmup, runs)
        text = transcripts[0].text
        reference = reference if reference is not None else text
        rows.append({"engine": engine, "dtype": dtype, "median_s": round(median, 4),
                     "times_s": [round(t, 4) for t in times], "rtfx": round(duration / median, 2),
                     "same_text_as_nemo_fp32": text == reference})
    return rows


def bench_set(loaded, signals, budgets: list[float], warmup: int, runs: int) -> list[dict]:
    from common.engine.transcriber import TranscribeOptions, plan_batches, transcribe_signals

    audio = sum(len(s) for s in signals) / 16000
    durations = [len(s) / 16000 for s in signals]

    def run(options: TranscribeOptions, batches):
        texts = [None] * len(signals)
        for batch in batches:
            for index, t in zip(batch, transcribe_signals(loaded, [signals[i] for i in batch], options)):
                texts[index] = t.text
        return texts

    configs = [("nemo transcribe(batch_size=4)", TranscribeOptions(engine="nemo"),
                plan_batches(durations, 4, None))]
    for dtype in ("fp32", "bf16"):
        for budget in budgets:
            configs.append((f"ours batched {budget:g} s", TranscribeOptions(engine="batched", dtype=dtype),
                            plan_batches(durations, 64, budget)))
    rows, reference = [], None
    for name, options, batches in configs:
        median, times, texts = median_seconds(lambda: run(options, batches), warmup, runs)
        reference = reference if reference is not None else texts
        rows.append({"config": name, "dtype": options.dtype, "batches": len(batches), "median_s": round(median, 3),
                     "times_s": [round(t, 3) for t in times], "throughput_rtfx": round(audio / median, 2),
                     "same_texts_as_nemo_fp32": sum(a == b for a, b in zip(texts, reference))})
    base = rows[0]["median_s"]
    for row in rows:
        row["speedup_vs_nemo"] = round(base / row["median_s"], 2)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:parakeet")
    parser.add_argument("--clip", default=os.path.join(REPO, "examples", "sample.wav"))
    parser.add_argument("--set", default=os.path.join(REPO, "bench", "clips", "manifest.jsonl"))
    parser.add_argument("--budgets", default="30,60,120,240", help="batch budgets in audio seconds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: load,first,clip,set")
    parser.add_argument("--output", default=os.path.join(REPO, "bench", "results", "engine_bench.json"))
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    from common.device.environment import collect_environment
    from common.inputs.audio import load_audio
    from common.inputs.sources import read_manifest
    from common.model.loading import load_model, resolve_model_source
    from common.model.random_models import cached_random_model

    source = resolve_model_source(args.model)
    nemo_path = str(cached_random_model(args.model)) if source.kind == "random" else source.path
    result = {"what_is_timed": __doc__.split("\n\n")[1],
              "environment": collect_environment(["cpu"], " ".join(sys.argv)), "model": args.model}
    if "load" not in skip:
        print("load ...", file=sys.stderr)
        result["load"] = bench_load(nemo_path)
    if "first" not in skip:
        print("first transcript, whole process ...", file=sys.stderr)
        result["first_transcript"] = bench_first_transcript(nemo_path, args.clip)
    loaded = load_model(nemo_path, "cpu")
    if "clip" not in skip:
        print("7.4 s clip ...", file=sys.stderr)
        result["clip"] = bench_clip(loaded, load_audio(args.clip), args.warmup, args.runs)
    if "set" not in skip:
        print("clip set ...", file=sys.stderr)
        signals = [load_audio(item.path) for item in read_manifest(args.set)]
        budgets = [float(b) for b in args.budgets.split(",")]
        result["set"] = {"files": len(signals), "audio_seconds": round(sum(len(s) for s in signals) / 16000, 2),
                         "rows": bench_set(loaded, signals, budgets, args.warmup, args.runs)}
    write_json_atomic(args.output, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("environment",)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
