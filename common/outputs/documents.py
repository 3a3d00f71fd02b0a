"""Assembling and publishing the results of a transcription run (stdout, a file, or a folder
with one file per input). Files are published atomically, once the run has finished."""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Optional

from ..engine.records import FileRecord
from ..files import write_text_atomic
from ..model.loading import LoadedModel, ModelSource
from .formats import SUBTITLE_RENDERERS, render_json, render_nemo_manifest, render_text
from .paths import per_input_names


def model_summary(source: ModelSource, loaded: Optional[LoadedModel]) -> dict:
    summary = {"spec": source.spec, "kind": source.kind, "path": source.path, "note": source.note}
    if loaded is not None:
        summary.update(loaded.info)
        summary["load_seconds"] = round(loaded.load_seconds, 3)
    return {key: value for key, value in summary.items() if value is not None}


def record_entry(record: FileRecord, device: str, model_spec: str) -> dict:
    """A file's record as it appears in every output (JSON, JSONL, the results stream)."""
    return {**record.to_dict(), "device": record.device or device, "model": model_spec}


def jsonl_line(index: int, entry: dict) -> str:
    return json.dumps({"index": index, **entry}, ensure_ascii=False) + "\n"


class InputOrder:
    """JSONL on stdout in input order although batches finish in another (the batched engine
    runs the longest first): each line waits until every earlier input's line is out."""

    def __init__(self, write: Callable[[str], None]):
        self.write, self.next, self.waiting = write, 0, {}

    def add(self, index: int, line: str) -> None:
        self.waiting[index] = line
        while self.next in self.waiting:
            self.write(self.waiting.pop(self.next))
            self.next += 1


def inference_document(records: list[FileRecord], model: dict, device: dict) -> dict:
    """The JSON document of a run: model, device, per-file entries and a summary."""
    ok = [r for r in records if r.ok]
    return {
        "model": model,
        "device": device,
        "results": [record_entry(r, device["device"], model["spec"]) for r in records],
        "summary": {
            "files": len(records),
            "ok": len(ok),
            "failed": len(records) - len(ok),
            "audio_seconds": round(sum(r.duration or 0.0 for r in ok), 3),
        },
    }


def render(document: dict, records: list[FileRecord], output_format: str,
           entries: Optional[list[Optional[dict]]] = None) -> str:
    if output_format == "nemo-manifest":
        return render_nemo_manifest(records, entries or [None] * len(records))
    if output_format == "json":
        return render_json(document)
    if output_format == "jsonl":
        return "".join(jsonl_line(index, entry) for index, entry in enumerate(document["results"]))
    if output_format == "text":
        return render_text(records)
    renderer = SUBTITLE_RENDERERS[output_format]
    return "".join(renderer(r) for r in records if r.ok)


def extension(output_format: str) -> str:
    return {"text": "txt", "nemo-manifest": "jsonl"}.get(output_format, output_format)


def write_outputs(document: dict, records: list[FileRecord], output_format: str,
                  output: Optional[str], output_dir: Optional[str],
                  entries: Optional[list[Optional[dict]]] = None) -> None:
    """stdout by default; --output FILE gets the whole run; --output-dir gets a file per input."""
    if output_dir:
        names = per_input_names([r.path for r in records], extension(output_format))
        for index, (record, entry, name) in enumerate(zip(records, document["results"], names)):
            if record.ok:
                single = dict(document, results=[entry])
                write_text_atomic(os.path.join(output_dir, name),
                                  render(single, [record], output_format, entries and [entries[index]]))
        if output is None:
            return
    text = render(document, records, output_format, entries)
    if output:
        write_text_atomic(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
