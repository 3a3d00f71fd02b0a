"""accuracy_run_perf.py under torchrun: every card benchmarked on its own duration-balanced
share, then the whole host timed together.

1. Each rank runs the usual benchmark (warm-up, timed runs, statistics) on its share: per-rank RTFx.
2. Baseline: rank 0 alone transcribes the whole set `runs` times while the others wait (skipped
   with a given `baseline` throughput).
3. All ranks meet at a barrier (the common start), each transcribes its share `runs` times, and
   the aggregate throughput is the audio of `runs` passes over the whole set divided by the
   slowest rank's time from that start: audio seconds per wall second of the host.
Scaling efficiency = aggregate / (ranks x one rank's throughput). Only the first configuration
of the sweep is timed together (per-rank results cover the whole sweep)."""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..device.accelerators import DeviceChoice, synchronize
from ..engine.transcriber import batches_for, planning_duration
from ..errors import InputError
from ..inputs.sources import collect_inputs
from ..measure.perf import PerfConfig, PerfOptions, PerfSweep, load_signals, pass_options, run_pass, run_perf
from ..model.loading import ModelPool, ModelSource, configure_decoding
from ..ranks.world import Coordinator, World, shard_by_duration


def share_paths(paths: list[str], world: World) -> tuple[list[str], list[str]]:
    """(every input's path, this rank's share), balanced by duration from the headers."""
    items = [item for item in collect_inputs(paths) if item.error is None]
    if len(items) < world.size:
        raise InputError(f"{len(items)} readable input(s) for {world.size} ranks: every rank needs at least one")
    shares = shard_by_duration(list(range(len(items))), [planning_duration(i) for i in items], world.size)
    return [i.path for i in items], [items[i].path for i in shares[world.rank]]


def _passes(loaded, inputs, config: PerfConfig, options: PerfOptions) -> float:
    transcribe = pass_options(config, options)
    batches = batches_for(inputs.durations, transcribe)
    start = time.perf_counter()
    for _ in range(options.runs):
        run_pass(loaded, inputs.signals, batches, transcribe)
    synchronize(loaded.device)
    return time.perf_counter() - start


def run_ranked_perf(world: World, choice: DeviceChoice, source: ModelSource, pool: ModelPool, paths: list[str],
                    sweep: PerfSweep, options: PerfOptions, import_seconds: float, command_line: str,
                    baseline: Optional[float] = None,
                    say: Callable[[str], None] = lambda _: None) -> Optional[dict]:
    """The per-rank benchmarks, the baseline and the aggregate; the document on rank 0, None elsewhere."""
    every_path, mine = share_paths(paths, world)
    coordinator = Coordinator(world, choice.device)
    try:
        coordinator.barrier()
        inputs = load_signals(mine)
        document = run_perf([choice], source, pool, inputs, sweep, options, import_seconds, command_line)
        loaded = pool.get(source, choice.device)
        if loaded.timestamps:
            configure_decoding(loaded.model, loaded.decoder_device or loaded.device, timestamps=False)
        config = sweep.configs(choice.device)[0]  # the sweep's first setting of every option
        # 2. one rank alone on the whole set (the others wait at the barrier)
        baseline_seconds, whole_audio = None, None
        if world.is_main:
            whole = load_signals(every_path)
            whole_audio = sum(whole.durations)
            if baseline is None:
                say(f"baseline: rank 0 alone, {len(whole.signals)} input(s), {options.runs} pass(es) ...")
                baseline_seconds = _passes(loaded, whole, config, options)
            del whole
        coordinator.barrier()
        # 3. every rank from the common start
        coordinator.barrier()
        seconds = _passes(loaded, inputs, config, options)
        first = document["results"][0]
        summary = {**coordinator.describe(), "inputs": inputs.paths, "audio_seconds": round(sum(inputs.durations), 3),
                   "rtfx": first["rtfx"], "median_seconds": first["stats"]["median"],
                   "together_seconds": round(seconds, 4),
                   "results": [{"config": r["config"], "rtfx": r["rtfx"], "median": r["stats"]["median"]}
                               for r in document["results"]]}
        summaries = coordinator.gather(summary)
        if not world.is_main:
            return None
        wall = max(s["together_seconds"] for s in summaries)
        aggregate = round(options.runs * whole_audio / wall, 3)
        if baseline is None:
            one = round(options.runs * whole_audio / baseline_seconds, 3)
            one_rank = {"throughput": one, "seconds": round(baseline_seconds, 4),
                        "measured": "rank 0 alone on the whole set, in this invocation"}
        else:
            one = baseline
            one_rank = {"throughput": one, "measured": "given (--baseline-throughput)"}
        document["ranks"] = summaries
        document["aggregate"] = {
            "config": config.label.replace(choice.device, choice.type), "ranks": world.size,
            "audio_seconds": round(options.runs * whole_audio, 3), "wall_seconds": round(wall, 4),
            "throughput": aggregate, "one_rank": one_rank,
            "speedup": round(aggregate / one, 3), "scaling_efficiency": round(aggregate / (world.size * one), 3),
            "measured": f"{options.runs} pass(es) over the whole set, each rank on its share, from a common "
                        "start barrier to the last rank's finish; audio seconds per wall second",
        }
        return document
    finally:
        coordinator.close()
