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

from .engine.records import FileRecord
from .engine.transcriber import TranscribeOptions, transcribe_inputs, transcribe_signals
from .errors import InputError
from .inputs.audio import SAMPLE_RATE, checked_array, duration_seconds
from .inputs.sources import collect_inputs
from .job.inference import timestamp_kinds

Audio = Union[str, "numpy.ndarray"]  # noqa: F821  (a path, or 16 kHz mono float32 samples)


@dataclass
class Model:
    """A loaded model on its device; `transcribe` takes paths, folders, manifests or arrays."""

    loaded: object  # common.model.loading.LoadedModel
    dtype: str = "fp32"
    encoder_runtime: str = "torch"  # or "onnxruntime": the CPU fp32 encoder in ONNX Runtime

    @property
    def device(self) -> str:
        return self.loaded.device

    def transcribe(self, audio: Union[Audio, Sequence[Audio]], timestamps: str = "none", batch_size: int = 16,
                   batch_seconds: float = 120.0) -> Union[FileRecord, list[FileRecord]]:
        """One FileRecord for one path or array; a list, in input order, for a list (a folder or
        a manifest expands to its files). A bad file is a record with `error`, not an exception."""
        from .model.loading import configure_decoding

        single = isinstance(audio, str) or hasattr(audio, "shape")
        kinds = timestamp_kinds(timestamps, "json")
        if bool(kinds) != self.loaded.timestamps:
            configure_decoding(self.loaded.model, self.loaded.decoder_device or self.device, bool(kinds))
            self.loaded.timestamps = bool(kinds)
        options = TranscribeOptions(batch_size=batch_size, timestamp_kinds=kinds, dtype=self.dtype, engine="batched",
                                    batch_seconds=batch_seconds, long_audio_seconds=600.0,
                                    encoder_runtime=self.encoder_runtime)
        items = [audio] if single else list(audio)
        records = self._arrays(items, options) if hasattr(items[0], "shape") else self._paths(items, options)
        return records[0] if single and len(records) == 1 else records

    def _paths(self, paths: list[str], options: TranscribeOptions) -> list[FileRecord]:
        inputs = collect_inputs([str(p) for p in paths])
        records: list = [None] * len(inputs)
        for batch in transcribe_inputs(self.loaded, inputs, options):
            for index, record in batch:
                records[index] = record
        return records

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


def load_model(model: Optional[str] = None, device: str = "auto", dtype: str = "fp32", loader: str = "fast",
               decoder_device: Optional[str] = None, encoder_runtime: str = "torch") -> Model:
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


def transcribe(audio: Union[Audio, Sequence[Audio]], model: Optional[str] = None, device: str = "auto",
               timestamps: str = "none", dtype: str = "fp32") -> Union[FileRecord, list[FileRecord]]:
    """Load and transcribe in one call (load once with `load_model` for repeated use)."""
    return load_model(model, device, dtype).transcribe(audio, timestamps=timestamps)


@dataclass(frozen=True)
class FileComparison:
    """One input through the device and the reference: do the transcripts agree?"""

    path: str
    duration: Optional[float]
    device_text: Optional[str]
    reference_text: Optional[str]
    match: bool
    wer: Optional[float]
    cer: Optional[float]
    error: Optional[str] = None

    @classmethod
    def from_entry(cls, entry: dict) -> "FileComparison":
        if entry.get("error"):
            return cls(entry["path"], None, None, None, False, None, None, entry["error"])
        return cls(entry["path"], entry["duration"], entry["device"]["text"], entry["reference"]["text"],
                   entry["match"], entry["wer"], entry["cer"])


@dataclass(frozen=True)
class AccuracyResult:
    passed: bool
    summary: str  # the one-line verdict the script prints
    files: list[FileComparison]
    document: dict  # the full results document, as accuracy_run.py --output writes it


def check_accuracy(audio: Union[str, Sequence[str]], model: Optional[str] = None, device: str = "auto",
                   reference: str = "cpu", dtype: str = "fp32", min_match: float = 1.0, max_wer: float = 0.0,
                   warmup: int = 1, output: Optional[str] = None, resume: bool = False) -> AccuracyResult:
    """accuracy_run.py as a call: `device` at `dtype` against `reference` at fp32, file by file.
    With `output`, comparisons are kept durably beside it and the document is published there."""
    from .device.accelerators import resolve_device
    from .files import write_json_atomic
    from .job.accuracy import AccuracyRun, accuracy_check
    from .measure.accuracy import AccuracyOptions
    from .model.loading import ModelPool, default_model_spec, resolve_model_source

    source = resolve_model_source(model or default_model_spec())
    items = collect_inputs([audio] if isinstance(audio, str) else list(audio))
    options = AccuracyOptions(dtype=dtype, warmup=warmup, min_match=min_match, max_wer=max_wer)
    pool = ModelPool(timestamps=True)
    document = accuracy_check(resolve_device(device), resolve_device(reference), source, source, pool, items,
                              options, AccuracyRun(output=output, resume=resume),
                              publish=(lambda doc: write_json_atomic(output, doc)) if output else (lambda doc: None))
    files = [FileComparison.from_entry(f) for f in document["accuracy"]["files"]]
    return AccuracyResult(document["accuracy"]["verdict"]["passed"], document["summary"], files, document)


@dataclass(frozen=True)
class PerfRow:
    """One configuration's timing: median latency, RTFx and where the time went."""

    device: str
    dtype: str
    engine: str
    batch_size: int
    audio_seconds: float
    median_seconds: float
    p90_seconds: float
    rtfx: float
    peak_memory_bytes: int
    encoder_runtime: str = "torch"


@dataclass(frozen=True)
class PerfResult:
    rows: list[PerfRow]
    document: dict  # as accuracy_run_perf.py --output writes it

    def csv(self) -> str:
        from .report.tables import perf_csv

        return perf_csv(self.document)


def benchmark(audio: Union[str, Sequence[str]], model: Optional[str] = None, devices: Sequence[str] = ("auto",),
              dtypes: Sequence[str] = ("fp32",), engines: Sequence[str] = ("batched",),
              batch_sizes: Sequence[int] = (1,), warmup: int = 1, runs: int = 5,
              encoder_runtimes: Sequence[str] = ("torch",)) -> PerfResult:
    """accuracy_run_perf.py as a call: every device x dtype x engine x batch size x encoder runtime
    (onnxruntime: CPU fp32 rows only), timed."""
    import time

    from .device.accelerators import resolve_device
    from .engine.precision import check_encoder_runtimes
    from .measure.perf import PerfOptions, PerfSweep, load_signals, run_perf
    from .model.loading import ModelPool, default_model_spec, import_nemo_asr, resolve_model_source

    check_encoder_runtimes([r for r in encoder_runtimes if r != "torch"], list(devices), list(dtypes))
    start = time.perf_counter()
    import_nemo_asr()
    import_seconds = time.perf_counter() - start
    source = resolve_model_source(model or default_model_spec())
    inputs = load_signals([audio] if isinstance(audio, str) else list(audio))
    document = run_perf([resolve_device(d) for d in devices], source, ModelPool(), inputs,
                        PerfSweep(tuple(dtypes), tuple(engines), tuple(batch_sizes),
                                  encoder_runtimes=tuple(encoder_runtimes)),
                        PerfOptions(warmup=warmup, runs=runs), import_seconds, "benchmark()")
    rows = [PerfRow(r["config"]["device"], r["config"]["dtype"], r["config"]["engine"], r["config"]["batch_size"],
                    r["audio_seconds"], r["stats"]["median"], r["stats"]["p90"], r["rtfx"], r["memory"]["peak"],
                    r["config"].get("encoder_runtime", "torch"))
            for r in document["results"]]
    return PerfResult(rows, document)


__all__ = ["Model", "load_model", "transcribe", "check_accuracy", "AccuracyResult", "FileComparison", "benchmark",
           "PerfResult", "PerfRow", "FileRecord", "SAMPLE_RATE"]
