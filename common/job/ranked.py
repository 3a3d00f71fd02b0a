"""A durable job across torchrun ranks: every rank reads what all earlier streams kept, meets
the others at the start barrier, runs its duration-balanced share into its own stream
(OUTPUT.rankR.partial.jsonl, fsynced batch by batch), and at the end rank 0 gathers the ranks'
summaries, reads every stream and returns every input's result in input order for publishing.

Records travel only through the streams on disk, never through torch.distributed, so a rank
that dies loses at most its in-flight batch, and --resume (any number of ranks) runs only what
no stream holds. In a world of one this is the single-process run, unchanged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Generic, Optional, TypeVar

from ..errors import SetupError
from ..inputs.sources import AudioInput
from ..outputs.stream import RecordStream, rank_stream_path, read_family, remove_family
from ..ranks.world import Coordinator, World, shard_by_duration
from .pipeline import Pipeline

Result = TypeVar("Result")


class RankedRun(Generic[Result]):
    def __init__(self, world: World, device: str, say: Callable[[str], None]):
        self.world, self.device = world, device
        self.say = (lambda m: say(f"{self.label}: {m}")) if world.ranked else say
        self.coordinator: Optional[Coordinator] = None
        self.base: Optional[Path] = None
        self.started = self.finished = None
        self.share: list[int] = []

    @property
    def label(self) -> str:
        return f"rank {self.world.rank} ({self.device})"

    def open(self, base: Optional[Path], settings: dict, resume: bool) -> Optional[RecordStream]:
        """Read every earlier stream, meet at the start barrier, then open this rank's stream.
        Each rank reads before any rank writes, so all compute the same shares."""
        self.base = base
        if self.world.ranked and base is None:
            raise SetupError("under torchrun give --output FILE (or --output-dir DIR): the ranks keep their "
                             "records beside it and rank 0 merges them there")
        if self.world.restart and not resume:
            # torchrun --max-restarts restarted the group after a rank failed: what every rank
            # finished is in the streams, so this attempt runs only the rest
            self.say(f"restart {self.world.restart} of the group: resuming from the ranks' streams")
            resume = True
        done = read_family(base, settings, resume) if base else {}
        self.coordinator = Coordinator(self.world, self.device)
        self.coordinator.barrier()  # the start barrier: every rank has read; from here on ranks write
        self.started = time.time()
        if base is None:
            return None
        own = rank_stream_path(base, self.world.rank) if self.world.ranked else base
        return RecordStream(own, settings, done, label=self.label if self.world.ranked else "")

    def my_share(self, pipeline: Pipeline, items: list[AudioInput], duration: Callable[[AudioInput], float]) -> list[int]:
        """This rank's inputs among those left: balanced by duration, longest first onto the
        least-loaded rank. Inputs that cannot be read (no key, nothing to keep) go to rank 0,
        which publishes."""
        remaining = pipeline.remaining
        if not self.world.ranked:
            self.share = remaining
            return remaining
        broken = [i for i in remaining if pipeline.keys[i] is None]
        runnable = [i for i in remaining if pipeline.keys[i] is not None]
        shares = shard_by_duration(runnable, [duration(items[i]) for i in runnable], self.world.size)
        self.share = sorted(shares[self.world.rank] + (broken if self.world.is_main else []))
        self.say(f"{len(self.share)} of {len(remaining)} remaining input(s) "
                 f"({sum(duration(items[i]) for i in self.share):.1f} s of audio), "
                 f"{self.coordinator.threads} CPU thread(s), {self.coordinator.backend}")
        return self.share

    def gather(self, summary: dict) -> Optional[list[dict]]:
        """Every rank's summary on rank 0 (None elsewhere) once every rank has finished its share."""
        self.finished = time.time()
        summary = {**self.coordinator.describe(), "inputs": len(self.share),
                   "seconds": round(self.finished - self.started, 3), **summary}
        return self.coordinator.gather(summary)

    def merged(self, pipeline: Pipeline, items: list[AudioInput],
               restore: Callable[[dict, AudioInput], Result]) -> list[Result]:
        """Rank 0: every input's result in input order; its own from memory, the others' from
        every stream of the run."""
        results = list(pipeline.results)
        if not self.world.ranked or self.base is None:
            return results
        stored = read_family(self.base, None, True)
        missing = []
        for index, (item, key) in enumerate(zip(items, pipeline.keys)):
            if results[index] is None or (key in stored and _failed(results[index]) and stored[key].get("error") is None):
                if key in stored:
                    results[index] = restore(stored[key], item)
                else:
                    missing.append(item.path)
        if missing:
            raise SetupError(f"{len(missing)} input(s) have no record in any rank stream (first: {missing[0]}); "
                             "run the same command with --resume")
        return results

    def remove_streams(self) -> None:
        if self.base is not None and self.world.is_main:
            remove_family(self.base)

    def close(self) -> None:
        if self.coordinator is not None:
            self.coordinator.close()


def _failed(result) -> bool:
    error = result.get("error") if isinstance(result, dict) else getattr(result, "error", None)
    return error is not None
