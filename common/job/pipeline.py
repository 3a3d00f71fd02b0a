"""The one pipeline every durable job runs: inputs -> what an earlier run kept -> the remaining
inputs in batches -> each batch's results appended to the stream -> every result, in input
order. What a batch *is* (a transcription batch, one compared file) is the caller's business."""

from __future__ import annotations

from typing import Callable, Generic, Iterable, Optional, TypeVar

from ..inputs.sources import AudioInput
from ..outputs.stream import RecordStream, input_key

Result = TypeVar("Result")


class Pipeline(Generic[Result]):
    """Results by input index; those an earlier run finished (without error) are restored from
    the stream, the rest come from `run(batches)`."""

    def __init__(self, items: list[AudioInput], stream: Optional[RecordStream],
                 restore: Callable[[dict, AudioInput], Result], say: Callable[[str], None], command_line: str):
        self.stream, self.say, self.command_line = stream, say, command_line
        self.keys = [input_key(item.path) if item.error is None else None for item in items]
        done = stream.done if stream else {}
        self.results: list[Optional[Result]] = [
            restore(done[key], item) if key in done and done[key].get("error") is None else None
            for item, key in zip(items, self.keys)]
        if done:
            kept = len(items) - len(self.remaining)
            say(f"resuming: {kept} of {len(items)} input(s) already done ({stream.path})")

    @property
    def remaining(self) -> list[int]:
        return [i for i, result in enumerate(self.results) if result is None]

    def run(self, batches: Iterable[list[tuple[int, Result]]], stored: Callable[[Result], dict],
            on_batch: Callable[[list[tuple[int, Result]]], None] = lambda batch: None) -> list[Result]:
        """Consume `batches` of (input index, result), keeping each batch durably as it comes; on
        Ctrl-C, SIGTERM or an error the stream keeps them and says how to resume."""
        try:
            for batch in batches:
                for index, result in batch:
                    self.results[index] = result
                if self.stream:
                    self.stream.append((self.keys[i], stored(result)) for i, result in batch)
                on_batch(batch)
        except BaseException as error:
            if self.stream is None:
                raise
            self.stream.stop(error, self.command_line, self.say)
        return self.results
