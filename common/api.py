"""The library API: what the scripts do, from Python, with typed results.

    from common import load_model
    model = load_model("demo", device="cpu")
    record = model.transcribe("examples/demo.wav", timestamps="word")
    print(record.text, record.words[0].start)

`transcribe()`, `check_accuracy()` and `benchmark()` are the one-call forms of the three
scripts; the scripts run the same job layer underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from .choices import (BATCH_SECONDS, BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_DTYPE, DEFAULT_ENCODER_RUNTIME,
                      DEFAULT_ENGINE, DEFAULT_GRAPH_MODE, DEFAULT_LOADER, DEFAULT_REFERENCE, LONG_AUDIO_SECONDS, MAX_WER,
                      MIN_MATCH, NO_REFERENCE, RUNS, WARMUP)
from .engine.records import FileRecord
from .engine.transcriber import TranscribeOptions, transcribe_signals
from .errors import InputError
from .inputs.audio import SAMPLE_RATE, checked_array, duration_seconds
from .inputs.sources import collect_inputs
from .job.inference import timestamp_kinds

Audio = Union[str, "numpy.ndarray"]  # noqa: F821  (a path, or 16 kHz mono float32 samples)


@dataclass
class Model:
    """A loaded model on its device; `transcribe` takes paths, folders, manifests or arrays."""

    loaded: object  # common.model.loading.LoadedModel
    dtype: str = DEFAULT_DTYPE
    encoder_runtime: str = DEFAULT_ENCODER_RUNTIME  # or "onnxruntime": the CPU fp32 encoder in ONNX Runtime

    @property
    def device(self) -> str:
        return self.loaded.device

    def transcribe(self, audio: Union[Audio, Sequence[Audio]], timestamps: str = "none", batch_size: int = BATCH_SIZE,
                   batch_seconds: float = BATCH_SECONDS) -> Union[FileRecord, list[FileRecord]]:
        """One FileRecord for one path or array; a list, in input order, for a list (a folder or
        a manifest expands to its files). A bad file is a record with `error`, not an exception."""
        from .model.loading import configure_decoding

        single = isinstance(audio, str) or hasattr(audio, "shape")
        options = _options(timestamps, self.dtype, self.encoder_runtime, batch_size, batch_seconds)
        if bool(options.timestamp_kinds) != self.loaded.timestamps:
            configure_decoding(self.loaded.model, self.loaded.decoder_device or self.device,
                               bool(options.timestamp_kinds))
            self.loaded.timestamps = bool(options.timestamp_kinds)
        items = [audio] if single else list(audio)
        records = self._arrays(items, options) if hasattr(items[0], "shape") else self._paths(items, options)
        return records[0] if single and len(records) == 1 else records

    def _paths(self, paths: list[str], options: TranscribeOptions) -> list[FileRecord]:
        """The job layer's run, as inference.py's, with this model already loaded."""
        from .device.accelerators import DeviceChoice
        from .job.inference import InferenceJob, JobSettings, OutputPlan, run_inference

        inputs = collect_inputs([str(p) for p in paths])
        job = InferenceJob(self.loaded.source, inputs, lambda: DeviceChoice(self.device, "the model's"),
                           JobSettings(options), loaded=self.loaded)
        return run_inference(job, OutputPlan(format=None))

    def _arrays(self, arrays: list, options: TranscribeOptions) -> list[FileRecord]:
        names = [f"<array {n}>" for n in range(len(arrays))]
        records: list = [None] * len(arrays)
        signals = {}
        for n, array in enumerate(arrays):
            try:
                signals[n] = checked_array(names[n], array)
            except InputError as error:
                records[n] = FileRecord(names[n], error=str(error))
        transcripts = transcribe_signals(self.loaded, list(signals.values()), options) if signals else []
        for (n, signal), t in zip(signals.items(), transcripts):
            records[n] = FileRecord(names[n], round(duration_seconds(signal), 4), t.text, t.timestamps,
                                    attention=t.attention)
        return records


def _options(timestamps: str, dtype: str, encoder_runtime: str, batch_size: int = BATCH_SIZE,
             batch_seconds: float = BATCH_SECONDS) -> TranscribeOptions:
    """The API's runs: the batched engine, with the scripts' defaults."""
    return TranscribeOptions(batch_size=batch_size, timestamp_kinds=timestamp_kinds(timestamps, None), dtype=dtype,
                             engine=DEFAULT_ENGINE, batch_seconds=batch_seconds,
                             long_audio_seconds=LONG_AUDIO_SECONDS, encoder_runtime=encoder_runtime)


def load_model(model: Optional[str] = None, device: str = DEFAULT_DEVICE, dtype: str = DEFAULT_DTYPE,
               loader: str = DEFAULT_LOADER, decoder_device: Optional[str] = None,
               encoder_runtime: str = DEFAULT_ENCODER_RUNTIME) -> Model:
    """Load `model` (a .nemo, an extracted folder, a pretrained name, "demo", "random:tiny";
    default as the scripts': $PARAKEET_MODEL, ./parakeet-tdt-0.6b-v2.nemo, the pretrained name)
    onto `device` (auto | cpu | npu[:N] | cuda[:N]), to run at `dtype` (fp32 | bf16 | fp16 | int8,
    int8 on the CPU only: common/engine/precision.py), its encoder in `encoder_runtime` (torch |
    onnxruntime, the latter for the CPU at fp32: common/engine/onnx_encoder.py)."""
    from .device.accelerators import prepare_device, resolve_device
    from .engine.precision import check_dtype_for_device, check_encoder_runtime
    from .model.loading import default_model_spec, resolve_model_source
    from .model.loading import load_model as load

    choice = resolve_device(device)
    check_dtype_for_device(dtype, choice.device)
    check_encoder_runtime(encoder_runtime, choice.device, dtype)
    prepare_device(choice.device, exact_fp32=dtype == "fp32")
    source = resolve_model_source(model or default_model_spec())
    if encoder_runtime == "onnxruntime":
        from .engine.onnx_encoder import open_in_background

        open_in_background(source)
    loaded = load(source.spec, choice.device, source=source, loader=loader, decoder_device=decoder_device)
    return Model(loaded, dtype, encoder_runtime)


def transcribe(audio: Union[Audio, Sequence[Audio]], model: Optional[str] = None, device: str = DEFAULT_DEVICE,
               timestamps: str = "none", dtype: str = DEFAULT_DTYPE) -> Union[FileRecord, list[FileRecord]]:
    """Load and transcribe in one call (load once with `load_model` for repeated use). Paths run
    as inference.py runs them (the job layer's transcribe_request): every input is checked first,
    and the model is not loaded when none can run."""
    if not isinstance(audio, str) and (hasattr(audio, "shape") or hasattr(next(iter(audio), None), "shape")):
        return load_model(model, device, dtype).transcribe(audio, timestamps=timestamps)
    from .device.accelerators import resolve_device
    from .job.inference import InferenceRequest, transcribe_request

    paths = (audio,) if isinstance(audio, str) else tuple(str(p) for p in audio)
    records = transcribe_request(InferenceRequest(paths, _options(timestamps, dtype, DEFAULT_ENCODER_RUNTIME),
                                                  model=model),
                                 lambda: resolve_device(device))
    return records[0] if isinstance(audio, str) and len(records) == 1 else records


@dataclass(frozen=True)
class Estimate:
    """A corpus rate and its 95% bootstrap interval (utterances resampled; None when too few)."""

    value: Optional[float]
    ci95: Optional[tuple[float, float]]


@dataclass(frozen=True)
class Comparison:
    """The figures of one comparison: `name` is "device vs reference", "device vs truth" or
    "reference vs truth"; `match_rate` (exact transcript matches) only for device vs reference."""

    name: str
    files: int
    wer: Estimate
    cer: Estimate
    match_rate: Optional[float] = None

    @classmethod
    def from_headline(cls, row: dict) -> "Comparison":
        def estimate(figure: dict) -> Estimate:
            return Estimate(figure["value"], tuple(figure["ci95"]) if figure["ci95"] else None)

        return cls(row["comparison"], row["files"], estimate(row["wer"]), estimate(row["cer"]), row.get("match_rate"))


@dataclass(frozen=True)
class FileComparison:
    """One input through the device (and the reference, when there is one): do the transcripts
    agree, and how far is the device from the truth? Absent parts are None."""

    path: str
    duration: Optional[float]
    device_text: Optional[str]
    reference_text: Optional[str]
    match: Optional[bool]  # device vs reference; None without a reference
    wer: Optional[float]  # device vs reference
    cer: Optional[float]  # device vs reference
    error: Optional[str] = None
    truth_text: Optional[str] = None
    truth_wer: Optional[float] = None  # device vs truth, normalized
    truth_cer: Optional[float] = None  # device vs truth, normalized
    id: Optional[Union[str, int]] = None  # the test set's id (Kaldi/LibriSpeech utterance, manifest or dataset id)

    @classmethod
    def from_entry(cls, entry: dict) -> "FileComparison":
        if entry.get("error"):
            return cls(entry["path"], None, None, None, None, None, None, entry["error"], id=entry.get("id"))
        truth = entry.get("truth") or {}
        return cls(entry["path"], entry["duration"], entry["device"]["text"],
                   (entry.get("reference") or {}).get("text"), entry.get("match"), entry.get("wer"), entry.get("cer"),
                   truth_text=truth.get("text"), truth_wer=(truth.get("device") or {}).get("wer"),
                   truth_cer=(truth.get("device") or {}).get("cer"), id=entry.get("id"))


@dataclass(frozen=True)
class AccuracyResult:
    passed: bool
    summary: str  # the one-line verdict the script prints
    files: list[FileComparison]
    document: dict  # the full results document, as accuracy_run.py --output writes it
    comparisons: tuple[Comparison, ...] = ()  # every figure, named by its comparison
    failures: tuple[str, ...] = ()  # why the verdict failed, each naming its comparison and threshold

    def comparison(self, name: str) -> Optional[Comparison]:
        """The figures of `name` ("device vs reference", "device vs truth", "reference vs truth"),
        None when the run had no such comparison."""
        return next((c for c in self.comparisons if c.name == name), None)

    @property
    def truth(self) -> Optional[Comparison]:
        """Device vs truth: the model's WER/CER on the test set, with intervals."""
        from .measure.accuracy import DEVICE_VS_TRUTH

        return self.comparison(DEVICE_VS_TRUTH)


def check_accuracy(audio: Union[str, Sequence[str]], model: Optional[str] = None, device: str = DEFAULT_DEVICE,
                   reference: Optional[str] = DEFAULT_REFERENCE, dtype: str = DEFAULT_DTYPE,
                   min_match: float = MIN_MATCH, max_wer: float = MAX_WER, max_truth_wer: Optional[float] = None,
                   truth_text: Optional[str] = None, warmup: int = WARMUP, output: Optional[str] = None,
                   resume: bool = False,
                   html: Optional[str] = None, seed: int = 0) -> AccuracyResult:
    """accuracy_run.py as a call: `device` at `dtype` against `reference` at fp32, file by file,
    and both against the ground truth where the inputs carry one (or `truth_text`, for one input).
    `reference=None` (or "none"): no reference, the device against the truth only (the model runs once).
    The verdict: `min_match`/`max_wer` judge device vs reference (with a reference),
    `max_truth_wer` device vs truth (when given). With `output`, comparisons are kept durably
    beside it (an interrupted run continues with `resume`) and the document is published there;
    `html` also writes the report. `seed`: the bootstrap's resampling."""
    from .inputs.items import InputOptions
    from .job.accuracy import AccuracyRequest, run_accuracy
    from .measure.accuracy import AccuracyOptions

    options = AccuracyOptions(dtype=dtype, warmup=warmup, min_match=min_match, max_wer=max_wer,
                              max_truth_wer=max_truth_wer, seed=seed)
    if reference == NO_REFERENCE:
        reference = None
    request = AccuracyRequest(tuple([audio] if isinstance(audio, str) else audio), model, device, reference,
                              truth_text=truth_text, inputs=InputOptions(seed=seed), options=options, output=output,
                              html=html, resume=resume, command_line="check_accuracy()")
    document = run_accuracy(request)
    result = document["accuracy"]
    return AccuracyResult(result["verdict"]["passed"], document["summary"],
                          [FileComparison.from_entry(f) for f in result["files"]], document,
                          tuple(Comparison.from_headline(row) for row in result["headline"]),
                          tuple(result["verdict"]["failures"]))


@dataclass(frozen=True)
class PerfRow:
    """One configuration's timing: median latency, RTFx and where the time went."""

    device: str
    dtype: str
    engine: str
    batch_size: int  # most files a batch
    audio_seconds: float
    median_seconds: float
    p90_seconds: float
    rtfx: float
    peak_memory_bytes: int
    encoder_runtime: str = "torch"
    batch_seconds: Optional[float] = None  # batched engine: most padded audio seconds a batch
    batching: str = ""  # in words: "batch ≤16 files / ≤120 s"


@dataclass(frozen=True)
class PerfResult:
    rows: list[PerfRow]
    document: dict  # as accuracy_run_perf.py --output writes it

    @property
    def ok(self) -> bool:
        """Every input read and both engines gave the same transcripts (where compared)."""
        return self.document["ok"]

    def csv(self) -> str:
        from .report.tables import perf_csv

        return perf_csv(self.document)


def benchmark(audio: Union[str, Sequence[str]], model: Optional[str] = None, devices: Sequence[str] = (DEFAULT_DEVICE,),
              dtypes: Sequence[str] = (DEFAULT_DTYPE,), engines: Sequence[str] = (DEFAULT_ENGINE,),
              batch_sizes: Sequence[int] = (BATCH_SIZE,), warmup: int = WARMUP, runs: int = RUNS,
              encoder_runtimes: Sequence[str] = (DEFAULT_ENCODER_RUNTIME,), *, batch_seconds: float = BATCH_SECONDS,
              decode_graphs: Sequence[str] = (DEFAULT_GRAPH_MODE,), decoder_devices: Sequence[str] = (),
              stage_runs: int = 1, check_engines: bool = True, long_audio_seconds: float = LONG_AUDIO_SECONDS,
              loader: str = DEFAULT_LOADER, threads: Optional[int] = None, inputs=None,
              baseline_throughput: Optional[float] = None, command_line: str = "benchmark()",
              progress: bool = False, debug: bool = False) -> Optional[PerfResult]:
    """accuracy_run_perf.py as a call: every device x dtype x engine x batch size x encoder runtime
    x decode-graph mode x decoder placement (onnxruntime: CPU fp32 rows only), timed. The defaults
    time what inference.py runs by default: the batched engine, batches of at most `batch_sizes`
    files and `batch_seconds` of padded audio (the nemo engine: `batch_sizes` files a call).

    `decoder_devices`: where the TDT decoder and joint run, "same" being the device itself; one
    placement loads the model that way, several are swept. `inputs`: the inputs layer's
    InputOptions (layout, columns, limit). `progress`: say the device chosen and each
    configuration on stderr. Under torchrun every rank times its own card on its share of the
    inputs and rank 0 gets the result, with the host's aggregate throughput; other ranks get None.
    """
    import time

    from . import cli
    from .engine.precision import check_encoder_runtimes
    from .model.loading import ModelPool, default_model_spec, describe, import_nemo_asr, resolve_model_source

    paths = [audio] if isinstance(audio, str) else list(audio)
    check_encoder_runtimes([r for r in encoder_runtimes if r != "torch"], list(devices), list(dtypes))
    start = time.perf_counter()
    import_nemo_asr(quiet=not debug)
    import_seconds = time.perf_counter() - start
    source = resolve_model_source(model or default_model_spec())
    world = cli.world()
    placements = [p if p == "same" else cli.select_device(p, announce=False).device for p in decoder_devices]
    # one placement elsewhere: the model is loaded that way; several: each configuration moves them
    decoder_device = placements[0] if len(placements) == 1 and placements[0] != "same" else None
    sweep = _perf_sweep(dtypes, engines, batch_sizes, batch_seconds, decode_graphs, encoder_runtimes,
                        placements if len(placements) > 1 else ())
    # with the decoder elsewhere the nemo engine cannot run, so there is no second engine to compare
    options = _perf_options(warmup, runs, stage_runs, check_engines and decoder_device is None, long_audio_seconds)
    pool = ModelPool(timestamps=False, quiet=not debug, loader=loader, decoder_device=decoder_device)
    if world.ranked:
        document = _ranked_benchmark(world, devices, placements, source, pool, paths, sweep, options, import_seconds,
                                     command_line, baseline_throughput, dtypes, threads, progress)
        if document is None:  # a rank other than 0: rank 0 reports for every card
            return None
    else:
        from .measure.perf import load_signals, run_perf

        signals = load_signals(paths, inputs) if inputs is not None else load_signals(paths)
        choices = [cli.select_device(spec, announce=progress, dtype=list(dtypes), ranks=world, threads=threads)
                   for spec in devices]
        if progress and source.note:
            cli.say(f"model: {describe(source)}")
        say = (lambda config: cli.say(f"measuring {config.label} ...")) if progress else None
        document = run_perf(choices, source, pool, signals, sweep, options, import_seconds, command_line, say)
    return PerfResult([_perf_row(r) for r in document["results"]], document)


def _perf_sweep(dtypes, engines, batch_sizes, batch_seconds, decode_graphs, encoder_runtimes, placements):
    from .measure.perf import PerfSweep

    return PerfSweep(dtypes=tuple(dtypes), engines=tuple(engines), batch_sizes=tuple(batch_sizes),
                     decode_graphs=tuple(decode_graphs), encoder_runtimes=tuple(encoder_runtimes),
                     decoder_devices=tuple(placements) or (None,), batch_seconds=batch_seconds)


def _perf_options(warmup, runs, stage_runs, check_engines, long_audio_seconds):
    from .measure.perf import PerfOptions

    return PerfOptions(warmup=warmup, runs=runs, stage_runs=stage_runs, check_engines=check_engines,
                       long_audio_seconds=long_audio_seconds)


def _ranked_benchmark(world, devices, placements, source, pool, paths, sweep, options, import_seconds,
                      command_line, baseline_throughput, dtypes, threads, progress) -> Optional[dict]:
    """Under torchrun: one device spec, each rank on the card of its LOCAL_RANK (common/job/perf_ranks.py)."""
    from . import cli
    from .errors import SetupError
    from .job.perf_ranks import run_ranked_perf

    if len(devices) != 1:
        raise SetupError("--devices: under torchrun every rank benchmarks its own card; give --device")
    if len(placements) > 1:
        raise SetupError("--decoder-device: under torchrun give one placement, not a list")
    choice = cli.select_device(devices[0], announce=progress, dtype=list(dtypes), ranks=world, threads=threads)
    return run_ranked_perf(world, choice, source, pool, paths, sweep, options, import_seconds, command_line,
                           baseline_throughput, cli.say if progress else (lambda _: None))


def _perf_row(result: dict) -> PerfRow:
    config = result["config"]
    return PerfRow(config["device"], config["dtype"], config["engine"], config["batch_size"], result["audio_seconds"],
                   result["stats"]["median"], result["stats"]["p90"], result["rtfx"], result["memory"]["peak"],
                   config["encoder_runtime"], config["batch_seconds"], result["batching"])


@dataclass(frozen=True)
class Finding:
    """A check that warned or failed, what it found, and the fix (a command or an action)."""

    name: str
    status: str  # "WARN" or "FAIL"
    value: str
    fix: str


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    verdict: str  # the environment's: READY, READY (CPU only: the NPU cannot be used: ...), NOT READY
    findings: list[Finding]  # every WARN and FAIL of the environment checks, with its fix
    document: dict  # as check_accuracy_run_perf.py writes report.json (the dry-run: --output)


def check_machine(audio: Union[str, Sequence[str]] = (), model: Optional[str] = None, device: str = DEFAULT_DEVICE,
                  dry_run: bool = False, *, dtype: str = DEFAULT_DTYPE, engine: str = DEFAULT_ENGINE,
                  warmup: int = WARMUP, runs: int = 3, min_match: float = MIN_MATCH, max_wer: float = MAX_WER,
                  report_dir: Optional[str] = None, resume: bool = False, all_cards: bool = False,
                  long_audio_seconds: float = LONG_AUDIO_SECONDS, loader: str = DEFAULT_LOADER,
                  threads: Optional[int] = None, inputs=None, command_line: str = "check_machine()",
                  progress: bool = False, debug: bool = False) -> CheckResult:
    """check_accuracy_run_perf.py as a call. `dry_run`: the environment checks alone (seconds, no
    model load). Otherwise the checks, then accuracy (`device` against the CPU, thresholds
    `min_match`/`max_wer`) and performance (`device` and the CPU, timed with `engine` and
    inference.py's batching) in one process; the accuracy comparisons are kept in `report_dir`
    as they finish (`resume` continues them). `all_cards`: accuracy and performance on every
    visible card of `device`'s kind. `progress`: say each stage on stderr."""
    from . import cli
    from .inputs.items import InputOptions
    from .job.smoke import SmokeOptions, run_check
    from .model.loading import default_model_spec

    options = SmokeOptions(model=model or default_model_spec(),
                           audio=(audio,) if isinstance(audio, str) else tuple(audio), device=device, dtype=dtype,
                           engine=engine, warmup=warmup, runs=runs, min_match=min_match, max_wer=max_wer,
                           quiet=not debug, debug=debug, loader=loader, report_dir=report_dir, resume=resume,
                           long_audio_seconds=long_audio_seconds, inputs=inputs or InputOptions(), threads=threads,
                           all_cards=all_cards)
    document, passed = run_check(options, dry_run, command_line, cli.say if progress else (lambda _: None))
    checks = document if dry_run else document["checks"]
    return CheckResult(passed, checks["verdict"], [Finding(**f) for f in checks["findings"]], document)


__all__ = ["Model", "load_model", "transcribe", "check_accuracy", "AccuracyResult", "FileComparison", "Comparison",
           "Estimate", "benchmark",
           "PerfResult", "PerfRow", "check_machine", "CheckResult", "Finding", "FileRecord", "SAMPLE_RATE"]
