"""The results stream: a JSON-lines file beside the requested output, one line per finished
input, appended and fsynced batch by batch. An interrupted run keeps every finished record
there; the same command with --resume skips them; the final output is built from the stream.

Line 1 is a header (format and the settings that change results); every other line is
{"key": ..., "record": {...}}. A torn last line (a crash mid-write) is dropped on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, NoReturn, Optional

from ..errors import RunStopped, SetupError, Terminated
from ..signals import deferred

FORMAT = "parakeet-records/1"
STREAM_SUFFIX = ".partial.jsonl"
DIR_STREAM_NAME = "parakeet-records" + STREAM_SUFFIX


def stream_path_for(output: Optional[str], output_dir: Optional[str] = None) -> Optional[Path]:
    """Where the records of a run writing `output` (or into `output_dir`) are kept."""
    if output:
        return Path(output).with_name(Path(output).name + STREAM_SUFFIX)
    if output_dir:
        return Path(output_dir) / DIR_STREAM_NAME
    return None


def input_key(path: str) -> Optional[str]:
    """An input's identity across runs: resolved path, size and mtime (an edited file is new)."""
    try:
        stat = os.stat(path)
    except OSError:
        container, mark, row = path.rpartition("#")  # audio embedded in a dataset: "<container>#<row>"
        if not mark or not row.isdigit() or not os.path.exists(container):
            return None
        return f"{input_key(container) or container}#{row}"
    return f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def read_stream(path: Path) -> tuple[dict, dict[str, dict], int]:
    """(header, key -> record, bytes of whole lines). A torn last line is left out."""
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    lines = whole.decode("utf-8", errors="replace").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("format") != FORMAT:
        raise SetupError(f"{path}: not a results stream of this toolkit (delete it to start over)")
    records = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(line)
            records[entry["key"]] = entry["record"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SetupError(f"{path}:{number}: damaged record line (delete the line or the file)") from None
    return header, records, len(whole)


def setting_differences(before: dict, now: dict) -> list[str]:
    return [f"{name} was {before.get(name)!r}, now {now.get(name)!r}"
            for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


class RecordStream:
    """Finished records of one run. `done` holds those of an earlier run when resuming."""

    def __init__(self, path: Path, settings: dict, resume: bool, resume_hint: str):
        self.path, self.settings = Path(path), settings
        self.done: dict[str, dict] = {}
        self.written = 0
        if self.path.exists():
            self._reopen(resume, resume_hint)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "w", encoding="utf-8")
            self._write_lines([{"format": FORMAT, "settings": settings}])

    def _reopen(self, resume: bool, resume_hint: str) -> None:
        if not resume:
            raise SetupError(f"{self.path}: holds the finished records of an earlier run; {resume_hint}, "
                             "or delete the file to start over")
        header, self.done, whole = read_stream(self.path)
        differences = setting_differences(header.get("settings", {}), self.settings)
        if differences:
            raise SetupError(f"--resume: {self.path} was written with other settings: " + "; ".join(differences))
        with open(self.path, "r+b") as handle:  # drop a torn last line before appending
            handle.truncate(whole)
        self._handle = open(self.path, "a", encoding="utf-8")

    def append(self, entries: Iterable[tuple[Optional[str], dict]]) -> None:
        """Write one batch's (key, record) pairs and force them to disk."""
        lines = [{"key": key, "record": record} for key, record in entries if key is not None]
        if lines:
            self._write_lines(lines, records=len(lines))

    def _write_lines(self, objects: list[dict], records: int = 0) -> None:
        text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
        with deferred():  # a signal here is raised once the lines are whole and counted
            self._handle.write(text)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.written += records

    @property
    def kept(self) -> int:
        return len(self.done) + self.written

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def finish(self, complete: bool, say: Callable[[str], None]) -> None:
        """After publishing: a complete run needs its stream no more; otherwise --resume will
        retry only what failed."""
        if complete:
            self.remove()
            return
        self.close()
        say(f"note: records kept in {self.path}; --resume retries only the failed input(s)")

    def stop(self, error: BaseException, command_line: str, say: Callable[[str], None]) -> NoReturn:
        """End a run early, keeping its records: say how many, where, and the resume command."""
        self.close()
        kept = f"{self.kept} finished record(s) kept in {self.path}"
        resume = "python " + command_line + ("" if " --resume" in f" {command_line}" else " --resume")
        if isinstance(error, KeyboardInterrupt):
            raise RunStopped(f"{kept}; resume with: {resume}", 143 if isinstance(error, Terminated) else 130) from None
        say(f"note: {kept}; after fixing the error, resume with: {resume}")
        raise error


def open_stream(path: Optional[Path], settings: dict, resume: bool) -> Optional[RecordStream]:
    """The stream of a run that writes to a file (None for stdout)."""
    return RecordStream(path, settings, resume, "add --resume to continue it") if path else None
