"""The worker: one thread that loads the model, transcribes a warm-up clip, then runs the
requests waiting in its queue, batched.

A batch starts with the oldest waiting request and takes the later ones that can share its
model call (the same timestamps, no long audio) while the batch's padded audio (files x
longest, as the engine plans its batches) stays within `max_batch_seconds` and its size within
`max_batch_files`; it waits at most `max_wait_ms` after the oldest request arrived for others to
join. Long audio (over choices.LONG_AUDIO_SECONDS) runs alone, as the engine runs it. One
thread owns the model, so model calls never overlap.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..choices import LONG_AUDIO_SECONDS
from ..errors import ToolkitError
from ..inputs.audio import SAMPLE_RATE
from .settings import ServeSettings

WARMUP_SECONDS = 1.0


class QueueFull(Exception):
    """The queue holds `max_queue` requests already: the client should retry later."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server's queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class NotServing(Exception):
    """The worker is not running requests (still loading, failed, or stopping)."""


@dataclass(eq=False)  # a request is itself, whatever its audio: the queue removes jobs by identity
class Job:
    """One request's audio, waiting for the model."""

    signal: object  # 16 kHz mono float32 samples
    timestamps: str  # Model.transcribe's choice: none | word | segment | all
    future: Future = field(default_factory=Future)
    arrival: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return len(self.signal) / SAMPLE_RATE

    @property
    def long(self) -> bool:
        return self.seconds > LONG_AUDIO_SECONDS


def warmup_signal():
    """A second of a low tone: it runs every stage of the model once before /ready says so."""
    import numpy as np

    t = np.arange(int(WARMUP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class Worker:
    """Owns the model on its thread. `state`: loading -> ready -> stopped, or failed (`error`)."""

    def __init__(self, load: Callable[[], object], settings: ServeSettings, metrics,
                 on_failure: Callable[[], None] = lambda: None):
        self._load, self.settings, self.metrics, self._on_failure = load, settings, metrics, on_failure
        self.model = None
        self.state = "loading"
        self.error: Optional[BaseException] = None
        self._pending: deque[Job] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._last_batch_seconds = 1.0
        self._thread = threading.Thread(target=self._main, name="parakeet-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the model (not counting the batch running now)."""
        return len(self._pending)

    def submit(self, job: Job) -> Future:
        with self._condition:
            if self.state != "ready" or self._stopping:
                raise NotServing("the model is not loaded yet" if self.state == "loading" else
                                 "the server is shutting down" if self._stopping or self.state == "stopped" else
                                 f"the model failed: {self.error}")
            if len(self._pending) >= self.settings.max_queue:
                raise QueueFull(self.retry_after())
            self._pending.append(job)
            self.metrics.queue_depth.set(len(self._pending))
            self._condition.notify()
        return job.future

    def retry_after(self) -> int:
        """Seconds until the queue has room, about: the queue's batches at the last batch's pace."""
        batches = math.ceil((len(self._pending) + 1) / max(1, self.settings.max_batch_files))
        return max(1, math.ceil(batches * self._last_batch_seconds))

    def stop(self, timeout: float) -> None:
        """Called once HTTP has drained: whatever still waits has no client left to answer (its
        request finished or was cancelled), so it is dropped; the batch running now may finish
        within `timeout` seconds."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._fail_waiting("the server stopped before this request ran")
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _fail_waiting(self, reason: str) -> None:
        with self._condition:
            left = list(self._pending)
            self._pending.clear()
        for job in left:
            if not job.future.done():
                job.future.set_exception(NotServing(reason))

    # ------------------------------------------------------------------ the worker thread

    def _main(self) -> None:
        try:
            self.model = self._load()
            self.model.transcribe([warmup_signal()], timestamps="none")
        except BaseException as error:  # noqa: B036  (a failed load ends the server, said in one line)
            self.error, self.state = error, "failed"
            self._on_failure()
            return
        self.state = "ready"
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    break
                self._run(batch)
        except BaseException as error:  # noqa: B036  (a bug here must not leave requests waiting forever)
            self.error, self.state = error, "failed"
            self._fail_waiting(f"the worker failed ({type(error).__name__}: {error})")
            self._on_failure()
            return
        self.state = "stopped"

    def _next_batch(self) -> list[Job]:
        wait = self.settings.max_wait_ms / 1000
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if not self._pending:
                return []
            while True:
                batch, full = self._fitting()
                remaining = self._pending[0].arrival + wait - time.monotonic()
                if full or remaining <= 0 or self._stopping:
                    break
                self._condition.wait(remaining)
            for job in batch:
                self._pending.remove(job)
            self.metrics.queue_depth.set(len(self._pending))
            return batch

    def _fitting(self) -> tuple[list[Job], bool]:
        """The oldest request and those that can join its batch now; full: nothing more could."""
        first = self._pending[0]
        batch = [first]
        if first.long:
            return batch, True
        longest = first.seconds
        for job in list(self._pending)[1:]:
            if len(batch) >= self.settings.max_batch_files:
                return batch, True
            if job.timestamps != first.timestamps or job.long:
                continue
            if (len(batch) + 1) * max(longest, job.seconds) > self.settings.max_batch_seconds:
                return batch, True
            batch.append(job)
            longest = max(longest, job.seconds)
        return batch, len(batch) >= self.settings.max_batch_files

    def _run(self, batch: list[Job]) -> None:
        started = time.monotonic()
        try:
            records = self._transcribe(batch)
        except BaseException as error:  # noqa: B036  (the batch's requests are answered, then it goes on up)
            for job in batch:
                job.future.set_exception(NotServing(f"the worker failed ({type(error).__name__}: {error})"))
            raise
        self._last_batch_seconds = time.monotonic() - started
        self.metrics.batch(len(batch), sum(job.seconds for job in batch), self._last_batch_seconds)
        for job, outcome in zip(batch, records):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _transcribe(self, batch: list[Job]) -> list:
        """One model call for the batch; if it fails, each request alone, so that one bad
        request does not fail its batch mates."""
        try:
            return self.model.transcribe([job.signal for job in batch], timestamps=batch[0].timestamps)
        except Exception as error:
            if len(batch) == 1:
                return [error if isinstance(error, ToolkitError) else
                        RuntimeError(f"transcription failed ({type(error).__name__}: {error})")]
        return [self._transcribe([job])[0] for job in batch]
