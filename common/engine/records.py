"""What a transcription gives back, as typed records: a file's record and its timestamps.
Their JSON form is made here and nowhere else (`to_dict` / `from_dict`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

TIMESTAMP_KINDS = ("word", "segment", "char")


@dataclass(frozen=True)
class Timestamp:
    """A word, segment or character and where it lies in the audio, in seconds."""

    text: str
    start: float
    end: float

    def to_dict(self, kind: str) -> dict:
        return {kind: self.text, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, entry: dict, kind: str) -> "Timestamp":
        return cls(entry[kind], float(entry["start"]), float(entry["end"]))


@dataclass
class FileRecord:
    """One input's result: its transcript (and timestamps), or the error that stopped it."""

    path: str
    duration: Optional[float] = None
    text: Optional[str] = None
    timestamps: Optional[dict[str, list[Timestamp]]] = None  # kind -> entries, kinds as requested
    error: Optional[str] = None
    truth: Optional[str] = None  # ground-truth text, from a manifest
    warning: Optional[str] = None  # transcribed, but something about the input is off
    attention: Optional[str] = None  # set when long audio switched the encoder to local attention
    device: Optional[str] = None  # the card it ran on, where ranks differ (torchrun)
    id: Optional[Union[str, int]] = None  # the test set's own id of the input (AudioInput.id), to join results back

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def words(self) -> list[Timestamp]:
        return (self.timestamps or {}).get("word", [])

    def to_dict(self) -> dict:
        data = {"path": self.path, "id": self.id, "duration": self.duration, "text": self.text, "error": self.error,
                "truth": self.truth, "warning": self.warning, "attention": self.attention, "device": self.device}
        if self.timestamps is not None:
            data["timestamps"] = {kind: [t.to_dict(kind) for t in entries]
                                  for kind, entries in self.timestamps.items()}
        return {key: value for key, value in data.items() if value is not None or key in ("text", "error")}

    @classmethod
    def from_dict(cls, data: dict) -> "FileRecord":
        stamps = data.get("timestamps")
        return cls(
            data["path"], data.get("duration"), data.get("text"),
            {kind: [Timestamp.from_dict(e, kind) for e in entries] for kind, entries in stamps.items()}
            if stamps is not None else None,
            data.get("error"), data.get("truth"), data.get("warning"), data.get("attention"), data.get("device"),
            data.get("id"))


@dataclass
class Transcript:
    """The engine's output for one signal, before it becomes a file's record."""

    text: str
    timestamps: Optional[dict[str, list[Timestamp]]] = None
    attention: Optional[str] = None
