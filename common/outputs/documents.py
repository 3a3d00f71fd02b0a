"""Assembling and writing the results of a transcription run (stdout, a file, or a folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from ..files import publish, write_text_atomic
from .formats import SUBTITLE_RENDERERS, render_json, render_text
from ..model.loading import LoadedModel, ModelSource
from ..engine.transcriber import FileResult


def model_summary(source: ModelSource, loaded: Optional[LoadedModel]) -> dict:
    summary = {"spec": source.spec, "kind": source.kind, "path": source.path, "note": source.note}
    if loaded is not None:
        summary.update(loaded.info)
        summary["load_seconds"] = round(loaded.load_seconds, 3)
    return {key: value for key, value in summary.items() if value is not None}


def inference_document(results: list[FileResult], source: ModelSource, loaded: Optional[LoadedModel],
                       device: dict) -> dict:
    """The JSON document of a run: model, device, and per file path/duration/text/timestamps/
    device/model/error."""
    files = []
    for result in results:
        entry = result.to_dict()
        entry["device"] = device["device"]
        entry["model"] = source.spec
        files.append(entry)
    ok = [r for r in results if r.ok]
    return {
        "model": model_summary(source, loaded),
        "device": device,
        "results": files,
        "summary": {
            "files": len(results),
            "ok": len(ok),
            "failed": len(results) - len(ok),
            "audio_seconds": round(sum(r.duration or 0.0 for r in ok), 3),
        },
    }


def render(document: dict, results: list[FileResult], output_format: str) -> str:
    if output_format == "json":
        return render_json(document)
    if output_format == "text":
        return render_text(results)
    renderer = SUBTITLE_RENDERERS[output_format]
    return "".join(renderer(r) for r in results if r.ok)


def write_outputs(document: dict, results: list[FileResult], output_format: str,
                  output: Optional[str], output_dir: Optional[str]) -> None:
    """stdout by default; --output FILE gets the whole run; --output-dir gets a file per input."""
    if output_dir:
        for result, entry in zip(results, document["results"]):
            if result.ok:
                single = dict(document, results=[entry])
                name = Path(result.path).stem + "." + ("txt" if output_format == "text" else output_format)
                write_text_atomic(os.path.join(output_dir, name), render(single, [result], output_format))
        if output is None:
            return
    text = render(document, results, output_format)
    if output:
        write_text_atomic(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


class JsonlWriter:
    """JSON lines to stdout as they come (flushed), or to a file published atomically at the end."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self._handle = None
        self._tmp = None

    def __enter__(self):
        if self.path:
            import tempfile

            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp")
            self._handle = os.fdopen(fd, "w", encoding="utf-8")
        else:
            self._handle = sys.stdout
        return self

    def write(self, record: dict) -> None:
        import json

        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def __exit__(self, exc_type, *_):
        if self._tmp is None:
            return
        self._handle.close()
        if exc_type is None:
            publish(self._tmp, self.path)
        elif os.path.exists(self._tmp):
            os.unlink(self._tmp)
