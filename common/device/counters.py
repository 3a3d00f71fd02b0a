"""Counters a device backend can report through (ops dispatched, host syncs, copies).

Nothing registers here in normal use. A backend that can count, such as the tests' emulated
npu, registers a snapshot function; stage timers then record how much each stage added."""

from __future__ import annotations

from typing import Callable, Optional

_SOURCES: list[Callable[[], dict]] = []


def register_source(snapshot: Callable[[], dict]) -> None:
    _SOURCES.append(snapshot)


def snapshot() -> Optional[dict]:
    """The merged counts of every registered source, or None when nothing counts."""
    if not _SOURCES:
        return None
    merged: dict = {}
    for source in _SOURCES:
        for key, value in source().items():
            merged[key] = merged.get(key, 0) + value
    return merged


def difference(before: Optional[dict], after: Optional[dict]) -> Optional[dict]:
    if before is None or after is None:
        return None
    return {key: after[key] - before.get(key, 0) for key in after}
