"""Clocks that tell the truth about asynchronous devices, and statistics over latencies."""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from typing import Optional

from . import counters
from .accelerators import synchronize


@contextmanager
def timed(device: str, sink: dict, key: str, counts: Optional[dict] = None):
    """Add the wall time of the block to sink[key]; the device is synchronized before both clock
    reads, so queued kernels are counted where they ran. With `counts`, also add what a
    registered counting backend (common/device/counters.py) counted in the block to counts[key]."""
    synchronize(device)
    before = counters.snapshot() if counts is not None else None
    start = time.perf_counter()
    try:
        yield
    finally:
        synchronize(device)
        sink[key] = sink.get(key, 0.0) + time.perf_counter() - start
        _add_counts(counts, key, before)


def _add_counts(counts: Optional[dict], key: str, before: Optional[dict]) -> None:
    added = counters.difference(before, counters.snapshot()) if counts is not None else None
    if added is not None:
        total = counts.setdefault(key, {})
        for name, value in added.items():
            total[name] = total.get(name, 0) + value


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def rtfx(audio_seconds: float, wall_seconds: float) -> float:
    """Real-time factor as a speed-up: seconds of audio per second of compute."""
    return audio_seconds / wall_seconds if wall_seconds > 0 else float("inf")


@contextmanager
def module_timer(module, device: str, sink: dict, key: str, counts: Optional[dict] = None):
    """Time every forward() of `module` inside the block into sink[key], via forward hooks, so
    that stages inside a library call (NeMo's transcribe) can be timed without changing it."""
    starts = []

    def before(*_):
        synchronize(device)
        starts.append((time.perf_counter(), counters.snapshot() if counts is not None else None))

    def after(*_):
        synchronize(device)
        start, snapshot = starts.pop()
        sink[key] = sink.get(key, 0.0) + time.perf_counter() - start
        _add_counts(counts, key, snapshot)

    handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
