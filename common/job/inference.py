"""The transcription pipeline: request -> inputs checked -> device and model -> batches ->
records stream -> finish. `transcribe_request` is the one way inference.py and the library API
assemble a run.

Every input is checked cheaply and the output paths validated before anything heavy; the device
is chosen and the model loaded once, and not at all when no input is left to run. Each batch's
records go to the results stream (fsynced) as soon as the batch finishes, so an interrupted run
keeps them and `--resume` skips them; the requested output is built from all records and published atomically
at the end. A failed or interrupted run never replaces an existing output.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..choices import DEFAULT_LOADER, SUBTITLE_FORMATS
from ..device.accelerators import DeviceChoice, device_name, prepare_device, resolve_device
from ..device.threads import cpu_threads_in_use
from ..engine.precision import check_dtype_for_device, check_encoder_runtime
from ..engine.records import TIMESTAMP_KINDS, FileRecord
from ..engine.transcriber import TranscribeOptions, planning_duration, transcribe_inputs
from ..errors import ToolkitError
from ..inputs.audio import check_audio_header
from ..inputs.items import InputOptions
from ..inputs.sources import AudioInput, collect_inputs
from ..model.loading import LoadedModel, ModelSource, describe, load_model, model_identity
from ..outputs.documents import (InputOrder, extension, inference_document, jsonl_line, model_summary, record_entry,
                                 write_outputs)
from ..outputs.paths import check_outputs, check_subtitle_inputs
from ..outputs.stream import RecordStream, open_stream, stream_path_for
from ..ranks.world import World
from .pipeline import Pipeline
from .ranked import RankedRun


def timestamp_kinds(choice: str, output_format: Optional[str]) -> tuple[str, ...]:
    """--timestamps none|word|segment|char|all as kinds; subtitles need segments (sentences) and
    words (to cut long segments into cues of readable length)."""
    kinds = TIMESTAMP_KINDS if choice == "all" else () if choice == "none" else (choice,)
    if output_format in SUBTITLE_FORMATS:
        kinds = tuple(dict.fromkeys(kinds + ("segment", "word")))
    return kinds


@dataclass(frozen=True)
class JobSettings:
    options: TranscribeOptions
    loader: str = DEFAULT_LOADER
    decoder_device: Optional[str] = None  # a device spec (auto | cpu | npu[:N] | cuda[:N]); None: --device's
    quiet: bool = True
    progress: bool = False


@dataclass(frozen=True)
class OutputPlan:
    """What the run writes, and how it continues an earlier one. format None: nothing is
    written, the records are only returned (the library API)."""

    format: Optional[str] = "json"
    output: Optional[str] = None  # None: stdout
    output_dir: Optional[str] = None
    resume: bool = False
    command_line: str = ""  # for the resume hint

    @property
    def on_stdout(self) -> bool:
        return self.format is not None and self.output is None and self.output_dir is None

    def progress(self, n_inputs: int, stderr=None) -> bool:
        """tqdm on stderr for a person at a terminal: not for one input, and not while stdout
        carries machine-readable results (text on stdout is for that person too)."""
        stderr = stderr or sys.stderr
        machine_on_stdout = self.on_stdout and self.format != "text"
        return n_inputs > 1 and self.format is not None and not machine_on_stdout and stderr.isatty()


@dataclass(frozen=True)
class InferenceRequest:
    """A transcription run as inference.py and the library API ask for it: the one description
    both hand to `transcribe_request`."""

    paths: tuple[str, ...]
    options: TranscribeOptions
    plan: OutputPlan = OutputPlan(format=None)
    model: Optional[str] = None  # a spec; None: default_model_spec()
    inputs: InputOptions = InputOptions()
    loader: str = DEFAULT_LOADER
    decoder_device: Optional[str] = None


def transcribe_request(request: InferenceRequest, choose_device: Callable[[], DeviceChoice],
                       say: Callable[[str], None] = lambda message: None, world: World = World(),
                       quiet: bool = True) -> Optional[list[FileRecord]]:
    """The one way a transcription run is assembled: expand and check every input, check the
    outputs, then (only if some input can run) choose the device (`choose_device`, called at
    most once) and load the model, run, publish. Returns every input's record in input order;
    None on a torchrun rank other than 0."""
    from ..model.loading import default_model_spec, resolve_model_source

    items = collect_inputs(list(request.paths), request.inputs)
    check_subtitle_inputs(request.plan.format, len(items), request.plan.output_dir)
    source = resolve_model_source(request.model or default_model_spec())  # the spec only: no weights
    settings = JobSettings(request.options, request.loader, request.decoder_device, quiet=quiet,
                           progress=request.plan.progress(len(items)))
    return run_inference(InferenceJob(source, items, choose_device, settings, say=say), request.plan, world)


def check_inputs(items: list[AudioInput]) -> None:
    """The cheap checks that need no decoding (a regular, non-empty file with a header libsndfile
    accepts), on every input before any device is chosen or model loaded; a failure becomes that
    input's error. Audio held in a dataset or piped in is checked when decoded."""
    for item in items:
        if item.error is None and item.embedded is None:
            try:
                check_audio_header(item.path)
            except ToolkitError as error:
                item.error = str(error)


def _quiet(_: str) -> None:
    pass


class InferenceJob:
    """Inputs, the model and where it runs. The device is chosen (`choose_device`) and the model
    loaded only when some input is left to run; `loaded` gives a model loaded already (the API)."""

    def __init__(self, source: ModelSource, items: list[AudioInput], choose_device: Callable[[], DeviceChoice],
                 settings: JobSettings, say: Callable[[str], None] = _quiet, loaded: Optional[LoadedModel] = None):
        self.source, self.items, self.settings, self.say, self.loaded = source, items, settings, say, loaded
        self._choose_device, self._choice = choose_device, None
        self.extra_info: dict = {}

    @property
    def choice(self) -> DeviceChoice:
        """The device, chosen on first use and checked against the precision and encoder runtime."""
        if self._choice is None:
            choice = self._choose_device()
            options = self.settings.options
            check_dtype_for_device(options.dtype, choice.device)
            check_encoder_runtime(options.encoder_runtime, choice.device, options.dtype)  # `auto`, now resolved
            self._choice = choice
        return self._choice

    @property
    def device_info(self) -> dict:
        if self._choice is None:
            return {"device": None, "reason": "none chosen: no input could be run"}
        return {"device": self._choice.device, "reason": self._choice.reason, **self.extra_info}

    @property
    def runnable(self) -> bool:
        return any(item.error is None for item in self.items)

    def fingerprint(self) -> dict:
        """The settings that change results: a resumed run must match them."""
        options = self.settings.options
        return {"model": model_identity(self.source), "device": self.choice.device, "dtype": options.dtype,
                "engine": options.engine, "timestamps": list(options.timestamp_kinds),
                "long_audio_seconds": options.long_audio_seconds,
                # only when not torch: streams written before the option existed still resume
                **({"encoder_runtime": options.encoder_runtime} if options.encoder_runtime != "torch" else {})}

    def failed(self, index: int) -> FileRecord:
        item = self.items[index]
        return FileRecord(item.path, error=item.error, truth=item.text, id=item.id)

    def batches(self, indices: list[int]) -> Iterator[list[tuple[int, FileRecord]]]:
        """Records of the inputs at `indices`, batch by batch as each finishes."""
        runnable = [i for i in indices if self.items[i].error is None]
        failed = [(i, self.failed(i)) for i in indices if self.items[i].error is not None]
        if failed:
            yield failed
        if not runnable:
            return
        if self.loaded is None:
            self._load([self.items[i] for i in runnable])
        for batch in transcribe_inputs(self.loaded, [self.items[i] for i in runnable], self.settings.options,
                                       progress=self.settings.progress):
            yield [(runnable[position], _with_id(record, self.items[runnable[position]]))
                   for position, record in batch]

    def _load(self, items: list[AudioInput]) -> None:
        settings, device = self.settings, self.choice.device
        decoder_device = self._decoder_device()
        prepare_device(device, exact_fp32=settings.options.dtype == "fp32")
        onnxruntime = settings.options.encoder_runtime == "onnxruntime"
        if onnxruntime:
            from ..engine import onnx_encoder

            prepack = onnx_encoder.prepacks(sum(planning_duration(item) for item in items))
            onnx_encoder.open_in_background(self.source, prepack)
        self.loaded = load_model(self.source.spec, device, timestamps=bool(settings.options.timestamp_kinds),
                                 quiet=settings.quiet, source=self.source, loader=settings.loader,
                                 decoder_device=decoder_device)
        if onnxruntime:
            onnx_encoder.onnx_encoder(self.loaded, prepack)
        if self.source.note:
            self.say(f"model: {describe(self.source)}")
        if "failed" in self.loaded.info["loader"]:
            self.say(f"warning: loaded with {self.loaded.info['loader']}")
        self.extra_info.update({"name": device_name(device), "dtype": settings.options.dtype,
                                "engine": settings.options.engine, "encoder_runtime": settings.options.encoder_runtime,
                                "decoder_device": decoder_device or device, "cpu_threads": cpu_threads_in_use()})

    def _decoder_device(self) -> Optional[str]:
        if self.settings.decoder_device is None:
            return None
        choice = resolve_device(self.settings.decoder_device)
        if choice.warning:
            self.say(f"warning: {choice.warning}")
        return choice.device


def _with_id(record: FileRecord, item: AudioInput) -> FileRecord:
    record.id = item.id
    return record


def _restore(entry: dict, item: AudioInput) -> FileRecord:
    return FileRecord.from_dict({**entry, "path": item.path, "id": item.id})


def run_inference(job: InferenceJob, plan: OutputPlan, world: World = World()) -> Optional[list[FileRecord]]:
    """Run the job to its published output; returns every input's record in input order.
    Every input is checked first; when none can run, neither a device is chosen nor the model
    loaded. Under torchrun (`world` of several ranks) each rank runs its share and rank 0 merges
    and publishes; the other ranks return None."""
    paths = [item.path for item in job.items]
    check_outputs(plan.output, plan.output_dir, [p for p in paths if os.path.exists(p)],
                  extension(plan.format))
    check_inputs(job.items)
    if world.ranked:
        return _run_ranked(job, plan, world)
    if not job.runnable:
        records = [job.failed(i) for i in range(len(job.items))]
        _Reporter(job, plan).batch(list(enumerate(records)))
        return _finish(job, plan, records, None)
    stream = None
    if plan.format is not None:
        stream = open_stream(stream_path_for(plan.output, plan.output_dir), job.fingerprint(), plan.resume)
    pipeline = Pipeline(job.items, stream, _restore, job.say, plan.command_line)
    report = _Reporter(job, plan)
    records = pipeline.run(job.batches(pipeline.remaining), FileRecord.to_dict, report.batch)
    return _finish(job, plan, records, stream)


def _run_ranked(job: InferenceJob, plan: OutputPlan, world: World) -> Optional[list[FileRecord]]:
    ranked = RankedRun(world, job.choice.device, job.say)
    try:
        stream = ranked.open(stream_path_for(plan.output, plan.output_dir), job.fingerprint(), plan.resume)
        pipeline = Pipeline(job.items, stream, _restore, ranked.say, plan.command_line)
        share = ranked.my_share(pipeline, job.items, planning_duration)
        records = pipeline.run(_on_card(job.batches(share), job.choice.device), FileRecord.to_dict,
                               _Reporter(job, plan).batch)
        stream.close()
        mine = [records[i] for i in share]
        summaries = ranked.gather({"failed": sum(not r.ok for r in mine),
                                   "audio_seconds": round(sum(r.duration or 0.0 for r in mine if r.ok), 3)})
        if not world.is_main:
            return None
        records = ranked.merged(pipeline, job.items, _restore)
        job.extra_info["ranks"] = summaries
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


class _Reporter:
    """Error lines on stderr as each batch finishes; with jsonl on stdout, each record's line as
    soon as every earlier input's is out (input order, although batches run longest first)."""

    def __init__(self, job: InferenceJob, plan: OutputPlan):
        self.job = job
        self.lines = InputOrder(_print) if plan.format == "jsonl" and plan.on_stdout else None

    def batch(self, batch: list[tuple[int, FileRecord]]) -> None:
        for index, record in batch:
            if not record.ok:
                self.job.say(f"error: {record.error}")
            if self.lines is not None:
                self.lines.add(index, jsonl_line(index, record_entry(record, self.job.device_info["device"],
                                                                     self.job.source.spec)))


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _finish(job: InferenceJob, plan: OutputPlan, records: list[FileRecord],
            stream: Optional[RecordStream]) -> list[FileRecord]:
    if plan.format is None:  # the library API: the records are the result
        return records
    document = inference_document(records, model_summary(job.source, job.loaded), job.device_info)
    every_one_failed = not any(r.ok for r in records)
    if every_one_failed and plan.output and os.path.exists(plan.output):
        job.say(f"note: every input failed; {plan.output} was left as it was")
    elif not (plan.format == "jsonl" and plan.on_stdout):
        write_outputs(document, records, plan.format, plan.output, plan.output_dir, [i.entry for i in job.items])
    if stream:
        stream.finish(all(r.ok for r in records), job.say)
    return records
