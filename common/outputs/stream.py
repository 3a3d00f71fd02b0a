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
RESUME_HINT = "add --resume to continue it"


def stream_path_for(output: Optional[str], output_dir: Optional[str] = None) -> Optional[Path]:
    """Where the records of a run writing `output` (or into `output_dir`) are kept."""
    if output:
        return Path(output).with_name(Path(output).name + STREAM_SUFFIX)
    if output_dir:
        return Path(output_dir) / DIR_STREAM_NAME
    return None


def rank_stream_path(base: Path, rank: int) -> Path:
    """Rank `rank`'s stream under torchrun: OUTPUT.rank3.partial.jsonl beside OUTPUT.partial.jsonl."""
    base = Path(base)
    return base.with_name(base.name[: -len(STREAM_SUFFIX)] + f".rank{rank}" + STREAM_SUFFIX)


def stream_family(base: Path) -> list[Path]:
    """Every stream of a run that exists now: the single-process one and every rank's, of any
    earlier world size (so a resume may use another number of ranks)."""
    base = Path(base)
    stem = base.name[: -len(STREAM_SUFFIX)]
    ranks = sorted(base.parent.glob(f"{glob_escape(stem)}.rank*{STREAM_SUFFIX}"),
                   key=lambda p: (len(p.name), p.name)) if base.parent.is_dir() else []
    ranks = [p for p in ranks if p.name[len(stem) + len(".rank"): -len(STREAM_SUFFIX)].isdigit()]
    return ([base] if base.exists() else []) + ranks


def glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


def comparable(settings: dict) -> dict:
    """Settings as compared across streams: a card's index is not a setting (rank 3 of an
    earlier run wrote npu:3; its inputs may now go to npu:0)."""
    return {name: (value.split(":")[0] if name in ("device", "reference") and isinstance(value, str) else value)
            for name, value in settings.items()}


def better(old: Optional[dict], new: dict) -> dict:
    """Of two records of one input (two streams), the one without an error; else the newer."""
    if old is not None and old.get("error") is None and new.get("error") is not None:
        return old
    return new


def read_family(base: Path, settings: Optional[dict], resume: bool) -> dict[str, dict]:
    """The finished records of every stream of the run writing `base`, merged by key. Streams
    there without --resume are refused (they hold finished work); with it, each must have been
    written with the same settings (`settings`; None: not checked). The one place a stream's
    settings are checked: every stream a run appends to or takes records from is read here first."""
    done: dict[str, dict] = {}
    for path in stream_family(base):
        if not resume:
            raise SetupError(f"{path}: holds the finished records of an earlier run; {RESUME_HINT}, "
                             "or delete the file to start over")
        header, records, _ = read_stream(path)
        if settings is not None:
            differences = setting_differences(comparable(header.get("settings", {})), comparable(settings))
            if differences:
                raise SetupError(f"--resume: {path} was written with other settings: " + "; ".join(differences))
        for key, record in records.items():
            done[key] = better(done.get(key), record)
    return done


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
    """Finished records of one run, appended to `path`. `done`: what every stream of the run
    holds (read_family, which refused a stream of other settings or one found without --resume)."""

    def __init__(self, path: Path, settings: dict, done: dict[str, dict], label: str = ""):
        """`label` names the writer in messages ("rank 1 (npu:1)")."""
        self.path, self.settings, self.done, self.label = Path(path), settings, done, label
        self.written = 0
        if self.path.exists():
            _, _, whole = read_stream(self.path)
            with open(self.path, "r+b") as handle:  # drop a torn last line before appending
                handle.truncate(whole)
            self._handle = open(self.path, "a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "w", encoding="utf-8")
            self._write_lines([{"format": FORMAT, "settings": settings}])

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
        retry only what failed. Complete, it removes the rank streams of an earlier torchrun
        run too: every record they held is in the published output."""
        if complete:
            self.remove()
            remove_family(self.path)
            return
        self.close()
        say(f"note: records kept in {self.path}; --resume retries only the failed input(s)")

    def stop(self, error: BaseException, command_line: str, say: Callable[[str], None]) -> NoReturn:
        """End a run early, keeping its records: say how many, where, and the resume command."""
        self.close()
        kept = (f"{self.label}: " if self.label else "") + f"{self.kept} finished record(s) kept in {self.path}"
        launcher = "" if command_line.startswith("torchrun ") else "python "
        resume = launcher + command_line + ("" if " --resume" in f" {command_line}" else " --resume")
        if isinstance(error, KeyboardInterrupt):
            raise RunStopped(f"{kept}; resume with: {resume}", 143 if isinstance(error, Terminated) else 130) from None
        say(f"note: {kept}; after fixing the error, resume with: {resume}")
        raise error



def open_stream(path: Optional[Path], settings: dict, resume: bool) -> Optional[RecordStream]:
    """The stream of a run that writes to a file (None for stdout). On --resume, the records of
    every rank stream of an earlier torchrun run count as done too."""
    if not path:
        return None
    return RecordStream(path, settings, read_family(path, settings, resume))


def remove_family(base: Path) -> None:
    """After a complete run is published: every stream of it, rank streams included."""
    for path in stream_family(base):
        path.unlink(missing_ok=True)
