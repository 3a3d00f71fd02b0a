"""The latency/RTFx benchmark.

What is timed: one *run* = transcribing every input once, from in-memory 16 kHz arrays to
transcripts (features, encoder, TDT decoding; with the `nemo` engine also NeMo's own dataloader
and output handling), inputs sorted longest first and cut into batches of `batch_size`. The
device is synchronized before every clock read. Not timed: reading and resampling the files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from .device import memory_bytes, reset_peak_memory
from .models import LoadedModel
from .timing import latency_stats, rtfx, timed
from .transcriber import TranscribeOptions, transcribe_signals

STAGE_NAMES = ("features", "encoder", "decoding")


@dataclass(frozen=True)
class PerfConfig:
    device: str
    dtype: str = "fp32"
    engine: str = "nemo"
    batch_size: int = 1

    @property
    def label(self) -> str:
        return f"{self.device} {self.dtype} {self.engine} b{self.batch_size}"


@dataclass(frozen=True)
class PerfOptions:
    warmup: int = 1
    runs: int = 5
    check_engines: bool = True  # run the other engine once and compare transcripts


def plan_batches(durations: list[float], batch_size: int) -> list[list[int]]:
    """Input indices, longest first, in batches of `batch_size` (minimal padding per batch)."""
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def run_pass(loaded: LoadedModel, signals: list, batches: list[list[int]], config: PerfConfig,
             stages: Optional[dict] = None) -> tuple[float, list[str]]:
    """Transcribe every input once; returns wall seconds and the texts in input order."""
    options = TranscribeOptions(batch_size=config.batch_size, dtype=config.dtype, engine=config.engine)
    texts: list = [None] * len(signals)
    sink: dict = {}
    with timed(loaded.device, sink, "total"):
        for batch in batches:
            for index, transcript in zip(batch, transcribe_signals(loaded, [signals[i] for i in batch], options, stages)):
                texts[index] = transcript.text
    return sink["total"], texts


def stage_breakdown(stages: dict, total: float) -> dict:
    """Seconds and share of the run per stage; 'other' is what no stage covered (for the nemo
    engine that is its dataloader plus decoding, which runs outside any module it can hook)."""
    covered = {name: stages[name] for name in STAGE_NAMES if name in stages}
    covered["other"] = max(total - sum(covered.values()), 0.0)
    return {name: {"seconds": round(value, 5), "share": round(value / total, 4) if total else None}
            for name, value in covered.items()}


def benchmark(loaded: LoadedModel, signals: list, durations: list[float], config: PerfConfig,
              options: PerfOptions, first_call: bool) -> dict:
    """Warm-up, timed runs and the engine cross-check for one configuration."""
    batches = plan_batches(durations, config.batch_size)
    audio_seconds = sum(durations)
    result: dict = {"config": asdict(config), "audio_seconds": round(audio_seconds, 4),
                    "batches": [[{"index": i, "duration": round(durations[i], 3)} for i in b] for b in batches]}
    warmups = []
    for _ in range(options.warmup):
        warmups.append(run_pass(loaded, signals, batches, config)[0])
    if first_call and warmups:
        result["first_call_seconds"] = round(warmups[0], 4)
    result["warmup_seconds"] = [round(w, 4) for w in warmups]
    reset_peak_memory(loaded.device)
    latencies, per_run_stages, texts = [], [], None
    for _ in range(options.runs):
        stages: dict = {}
        seconds, texts = run_pass(loaded, signals, batches, config, stages)
        latencies.append(seconds)
        per_run_stages.append(stage_breakdown(stages, seconds))
    stats = latency_stats(latencies)
    result.update({
        "latencies": [round(x, 5) for x in latencies],
        "stats": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in stats.items()},
        "rtfx": round(rtfx(audio_seconds, stats["median"]), 3),
        "throughput": {"audio_seconds_per_second": round(rtfx(audio_seconds, stats["median"]), 3),
                       "files_per_second": round(len(signals) / stats["median"], 3)},
        "stages": per_run_stages,
        "stage_median": _median_stages(per_run_stages),
        "host_syncs": None,  # counted where a counting backend is registered (see common/counters.py)
        "memory": memory_bytes(loaded.device),
        "texts": texts,
    })
    if options.check_engines:
        other = PerfConfig(config.device, config.dtype, "direct" if config.engine == "nemo" else "nemo",
                           config.batch_size)
        other_texts = run_pass(loaded, signals, batches, other)[1]
        result["engine_check"] = {"engines": [config.engine, other.engine], "identical": other_texts == texts,
                                  "differing_files": [i for i, (a, b) in enumerate(zip(texts, other_texts)) if a != b]}
    return result


def _median_stages(per_run: list[dict]) -> dict:
    import statistics

    names = per_run[0].keys() if per_run else []
    return {name: round(statistics.median(run[name]["seconds"] for run in per_run), 5) for name in names}


def cold_start(import_seconds: float, loaded: LoadedModel) -> dict:
    return {"import_seconds": round(import_seconds, 3), "load_seconds": round(loaded.load_seconds, 3),
            "to_device_seconds": round(loaded.to_device_seconds, 3)}


def device_ratios(results: list[dict]) -> list[dict]:
    """For configurations measured on several devices: median latency of each device relative to
    the first device listed (above 1: slower than the first)."""
    by_setting: dict = {}
    for result in results:
        cfg = result["config"]
        by_setting.setdefault((cfg["dtype"], cfg["engine"], cfg["batch_size"]), []).append(result)
    ratios = []
    for (dtype, engine, batch_size), group in by_setting.items():
        if len(group) < 2:
            continue
        base = group[0]
        for other in group[1:]:
            ratios.append({
                "dtype": dtype, "engine": engine, "batch_size": batch_size,
                "base": base["config"]["device"], "other": other["config"]["device"],
                "latency_ratio": round(other["stats"]["median"] / base["stats"]["median"], 3),
                "rtfx": {base["config"]["device"]: base["rtfx"], other["config"]["device"]: other["rtfx"]},
            })
    return ratios
