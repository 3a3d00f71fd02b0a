"""The transcription pipeline: plan -> run batches -> records stream -> finish.

Inputs are checked cheaply and the output paths validated before anything heavy; the model is
loaded once, and not at all when no input is left to run. Each batch's records go to the
results stream (fsynced) as soon as the batch finishes, so an interrupted run keeps them and
`--resume` skips them; the requested output is built from all records and published atomically
at the end. A failed or interrupted run never replaces an existing output.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..device.accelerators import DeviceChoice, device_name, prepare_device
from ..device.threads import cpu_threads_in_use
from ..engine.records import TIMESTAMP_KINDS, FileRecord
from ..engine.transcriber import TranscribeOptions, planning_duration, transcribe_inputs
from ..errors import ToolkitError
from ..inputs.audio import check_audio_header
from ..inputs.sources import AudioInput
from ..model.loading import LoadedModel, ModelSource, describe, load_model, model_identity
from ..outputs.documents import extension, inference_document, model_summary, record_entry, write_outputs
from ..outputs.paths import check_outputs
from ..outputs.stream import RecordStream, open_stream, stream_path_for
from ..ranks.world import World
from .pipeline import Pipeline
from .ranked import RankedRun


def timestamp_kinds(choice: str, output_format: str) -> tuple[str, ...]:
    """--timestamps none|word|segment|char|all as kinds; subtitles need segments (sentences) and
    words (to cut long segments into cues of readable length)."""
    kinds = TIMESTAMP_KINDS if choice == "all" else () if choice == "none" else (choice,)
    if output_format in ("srt", "vtt"):
        kinds = tuple(dict.fromkeys(kinds + ("segment", "word")))
    return kinds


@dataclass(frozen=True)
class JobSettings:
    options: TranscribeOptions
    loader: str = "fast"
    decoder_device: Optional[str] = None
    quiet: bool = True
    progress: bool = False


@dataclass(frozen=True)
class OutputPlan:
    """What the run writes, and how it continues an earlier one."""

    format: str = "json"
    output: Optional[str] = None  # None: stdout
    output_dir: Optional[str] = None
    resume: bool = False
    command_line: str = ""  # for the resume hint


def _quiet(_: str) -> None:
    pass


class InferenceJob:
    def __init__(self, source: ModelSource, items: list[AudioInput], device: DeviceChoice, settings: JobSettings,
                 say: Callable[[str], None] = _quiet):
        self.source, self.items, self.choice, self.settings, self.say = source, items, device, settings, say
        self.loaded: Optional[LoadedModel] = None
        self.device_info = {"device": device.device, "reason": device.reason}

    def fingerprint(self) -> dict:
        """The settings that change results: a resumed run must match them."""
        options = self.settings.options
        return {"model": model_identity(self.source), "device": self.choice.device, "dtype": options.dtype,
                "engine": options.engine, "timestamps": list(options.timestamp_kinds),
                "long_audio_seconds": options.long_audio_seconds,
                # only when not torch: streams written before the option existed still resume
                **({"encoder_runtime": options.encoder_runtime} if options.encoder_runtime != "torch" else {})}

    def batches(self, indices: list[int]) -> Iterator[list[tuple[int, FileRecord]]]:
        """Records of the inputs at `indices`, batch by batch as each finishes."""
        items = [self.items[i] for i in indices]
        for item in items:
            if item.error is None and item.embedded is None:  # embedded audio is checked when decoded
                try:
                    check_audio_header(item.path)
                except ToolkitError as error:
                    item.error = str(error)
        runnable = [i for i, item in zip(indices, items) if item.error is None]
        failed = [(i, FileRecord(item.path, error=item.error, truth=item.text))
                  for i, item in zip(indices, items) if item.error is not None]
        if failed:
            yield failed
        if not runnable:
            return
        self._load([self.items[i] for i in runnable])
        for batch in transcribe_inputs(self.loaded, [self.items[i] for i in runnable], self.settings.options,
                                       progress=self.settings.progress):
            yield [(runnable[position], record) for position, record in batch]

    def _load(self, items: list[AudioInput]) -> None:
        settings, device = self.settings, self.choice.device
        prepare_device(device, exact_fp32=settings.options.dtype == "fp32")
        onnxruntime = settings.options.encoder_runtime == "onnxruntime"
        if onnxruntime:
            from ..engine import onnx_encoder

            prepack = onnx_encoder.prepacks(sum(planning_duration(item) for item in items))
            onnx_encoder.open_in_background(self.source, prepack)
        self.loaded = load_model(self.source.spec, device, timestamps=bool(settings.options.timestamp_kinds),
                                 quiet=settings.quiet, source=self.source, loader=settings.loader,
                                 decoder_device=settings.decoder_device)
        if onnxruntime:
            onnx_encoder.onnx_encoder(self.loaded, prepack)
        if self.source.note:
            self.say(f"model: {describe(self.source)}")
        if "failed" in self.loaded.info["loader"]:
            self.say(f"warning: loaded with {self.loaded.info['loader']}")
        self.device_info.update({"name": device_name(device), "dtype": settings.options.dtype,
                                 "engine": settings.options.engine, "encoder_runtime": settings.options.encoder_runtime,
                                 "decoder_device": settings.decoder_device or device,
                                 "cpu_threads": cpu_threads_in_use()})


def _restore(entry: dict, item: AudioInput) -> FileRecord:
    return FileRecord.from_dict({**entry, "path": item.path})


def run_inference(job: InferenceJob, plan: OutputPlan, world: World = World()) -> Optional[list[FileRecord]]:
    """Run the job to its published output; returns every input's record in input order.
    Under torchrun (`world` of several ranks) each rank runs its share and rank 0 merges and
    publishes; the other ranks return None."""
    paths = [item.path for item in job.items]
    check_outputs(plan.output, plan.output_dir, [p for p in paths if os.path.exists(p)],
                  extension(plan.format))
    if not world.ranked:
        stream = open_stream(stream_path_for(plan.output, plan.output_dir), job.fingerprint(), plan.resume)
        pipeline = Pipeline(job.items, stream, _restore, job.say, plan.command_line)
        records = pipeline.run(job.batches(pipeline.remaining), FileRecord.to_dict,
                               lambda batch: _report_batch(job, plan, batch))
        return _finish(job, plan, records, stream)
    return _run_ranked(job, plan, world)


def _run_ranked(job: InferenceJob, plan: OutputPlan, world: World) -> Optional[list[FileRecord]]:
    ranked = RankedRun(world, job.choice.device, job.say)
    try:
        stream = ranked.open(stream_path_for(plan.output, plan.output_dir), job.fingerprint(), plan.resume)
        pipeline = Pipeline(job.items, stream, _restore, ranked.say, plan.command_line)
        share = ranked.my_share(pipeline, job.items, planning_duration)
        records = pipeline.run(_on_card(job.batches(share), job.choice.device), FileRecord.to_dict,
                               lambda batch: _report_batch(job, plan, batch))
        stream.close()
        mine = [records[i] for i in share]
        summaries = ranked.gather({"failed": sum(not r.ok for r in mine),
                                   "audio_seconds": round(sum(r.duration or 0.0 for r in mine if r.ok), 3)})
        if not world.is_main:
            return None
        records = ranked.merged(pipeline, job.items, _restore)
        job.device_info["ranks"] = summaries
        _finish(job, plan, records, None)
        if all(r.ok for r in records):
            ranked.remove_streams()
        else:
            job.say(f"note: records kept in the rank streams beside {plan.output or plan.output_dir}; "
                    "--resume retries only the failed input(s)")
        return records
    finally:
        ranked.close()


def _on_card(batches, device: str):
    """Each record names the card it ran on (the ranks' cards differ)."""
    for batch in batches:
        for _, record in batch:
            record.device = device
        yield batch


def _report_batch(job: InferenceJob, plan: OutputPlan, batch: list[tuple[int, FileRecord]]) -> None:
    """Error lines on stderr; with jsonl on stdout, each record as soon as its batch is done."""
    for index, record in batch:
        if not record.ok:
            job.say(f"error: {record.error}")
        if plan.format == "jsonl" and plan.output is None:
            entry = {"index": index, **record_entry(record, job.choice.device, job.source.spec)}
            sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
            sys.stdout.flush()


def _finish(job: InferenceJob, plan: OutputPlan, records: list[FileRecord],
            stream: Optional[RecordStream]) -> list[FileRecord]:
    document = inference_document(records, model_summary(job.source, job.loaded), job.device_info)
    every_one_failed = not any(r.ok for r in records)
    if every_one_failed and plan.output and os.path.exists(plan.output):
        job.say(f"note: every input failed; {plan.output} was left as it was")
    elif not (plan.format == "jsonl" and plan.output is None):
        write_outputs(document, records, plan.format, plan.output, plan.output_dir, [i.entry for i in job.items])
    if stream:
        stream.finish(all(r.ok for r in records), job.say)
    return records
