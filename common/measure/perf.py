"""The latency/RTFx benchmark.

What is timed: one *run* = transcribing every input once, from in-memory 16 kHz arrays to
transcripts (features, encoder, TDT decoding; with the `nemo` engine also NeMo's own dataloader
and output handling), inputs sorted longest first and cut into batches as inference.py cuts
them: the batched engine at most `batch_size` files and `batch_seconds` of padded audio a batch,
the nemo engine `batch_size` files. With one input every batch is that input alone, so a run is
its latency. A timed
run has nothing inside it but the work: the device is synchronized once before the clock starts
and once before it stops. The stage breakdown (features, encoder, decoding) comes from separate
*stage runs*, labelled as such, in which every stage is synchronized at both ends; their
seconds are not the headline. Not timed: reading and resampling the files.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

from ..choices import (BATCH_SECONDS, BATCH_SIZE, DEFAULT_DTYPE, DEFAULT_ENCODER_RUNTIME, DEFAULT_ENGINE,
                       DEFAULT_GRAPH_MODE, LONG_AUDIO_SECONDS, RUNS, WARMUP)
from ..device.accelerators import DeviceChoice, memory_bytes, prepare_device, reset_peak_memory
from ..device.clocks import latency_stats, rtfx, timed
from ..device.environment import collect_environment
from ..engine.precision import runtime_applies
from ..engine.transcriber import TranscribeOptions, batches_for, transcribe_signals
from ..errors import InputError, SetupError
from ..inputs.audio import duration_seconds
from ..inputs.sources import InputOptions, collect_inputs, read_signal
from ..model.loading import LoadedModel, ModelPool, ModelSource, configure_decoding

STAGE_NAMES = ("features", "encoder", "decoding")


@dataclass(frozen=True)
class PerfConfig:
    device: str
    dtype: str = DEFAULT_DTYPE
    engine: str = DEFAULT_ENGINE
    batch_size: int = BATCH_SIZE  # most files a batch
    decode_graphs: str = DEFAULT_GRAPH_MODE  # --decode-graphs for this configuration
    decoder_device: Optional[str] = None  # where the TDT decoder and joint run; None: where the model put them
    encoder_runtime: str = DEFAULT_ENCODER_RUNTIME  # --encoder-runtime for this configuration
    batch_seconds: Optional[float] = BATCH_SECONDS  # batched engine: most padded audio seconds a batch; None: no limit

    @property
    def label(self) -> str:
        extra = (f" graphs {self.decode_graphs}" if self.decode_graphs != "off" else "") + \
            (f" decoder {self.decoder_device}" if self.decoder_device else "") + \
            (f" encoder {self.encoder_runtime}" if self.encoder_runtime != "torch" else "")
        return f"{self.device} {self.dtype} {self.engine} {self.batching}{extra}"

    @property
    def batching(self) -> str:
        return batching_text(self.batch_size, self.batch_seconds if self.engine == "batched" else None)


def batching_text(batch_size: int, batch_seconds: Optional[float]) -> str:
    """'batch ≤16 files / ≤120 s' (batched engine), 'batch ≤1 file' (nemo engine)."""
    files = f"batch ≤{batch_size} file{'s' if batch_size != 1 else ''}"
    return files + (f" / ≤{batch_seconds:g} s" if batch_seconds is not None else "")


@dataclass(frozen=True)
class PerfSweep:
    """What accuracy_run_perf.py times; its defaults are what inference.py runs by default."""

    dtypes: tuple = (DEFAULT_DTYPE,)
    engines: tuple = (DEFAULT_ENGINE,)
    batch_sizes: tuple = (BATCH_SIZE,)
    decode_graphs: tuple = (DEFAULT_GRAPH_MODE,)
    decoder_devices: tuple = (None,)  # None: where the model was loaded with them; "same": on the device
    encoder_runtimes: tuple = (DEFAULT_ENCODER_RUNTIME,)
    batch_seconds: float = BATCH_SECONDS  # the batched engine's audio budget a batch (not swept)

    def configs(self, device: str) -> list:
        """Every combination on `device`; decoder placements other than the device run the batched
        engine only (NeMo's transcribe() keeps the decoder with the encoder), graphs only apply
        where the decoder runs on the npu, and an encoder runtime other than torch where it can run
        (ONNX Runtime: the CPU at fp32)."""
        configs = []
        for decoder in self.decoder_devices:
            decoder = device if decoder == "same" else decoder
            elsewhere = decoder is not None and decoder != device
            for d in self.dtypes:
                for e in self.engines:
                    for b in self.batch_sizes:
                        for g in self.decode_graphs:
                            for r in self.encoder_runtimes:
                                if elsewhere and (e == "nemo" or g != "off") or not runtime_applies(r, device, d):
                                    continue
                                seconds = self.batch_seconds if e == "batched" else None
                                configs.append(PerfConfig(device, d, e, b, g, decoder, r, seconds))
        return configs


@dataclass
class PerfInputs:
    paths: list = field(default_factory=list)
    signals: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def load_signals(paths: list[str], input_options: InputOptions = InputOptions()) -> PerfInputs:
    """Decode every input once, up front (not timed); bad files are recorded and left out."""
    inputs = PerfInputs()
    for item in collect_inputs(paths, input_options):
        try:
            if item.error:
                raise InputError(item.error)
            signal = read_signal(item)
        except InputError as error:
            inputs.errors.append(str(error))
            continue
        inputs.paths.append(item.path)
        inputs.signals.append(signal)
        inputs.durations.append(duration_seconds(signal))
    if not inputs.signals:
        raise InputError("no readable input to benchmark" + (f" ({inputs.errors[0]})" if inputs.errors else ""))
    return inputs


@dataclass(frozen=True)
class PerfOptions:
    warmup: int = WARMUP
    runs: int = RUNS
    stage_runs: int = 1  # separate runs with a synchronizing probe around every stage
    check_engines: bool = True  # run the other engine once and compare transcripts
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # longer inputs: a batch of their own, local attention


def pass_options(config: PerfConfig, options: PerfOptions) -> TranscribeOptions:
    """How a configuration transcribes: longest first, at most `batch_size` inputs and (batched
    engine) `batch_seconds` of padded audio per batch, under the long-audio rule."""
    budget = config.batch_seconds if config.engine == "batched" and config.batch_seconds is not None else float("inf")
    return TranscribeOptions(batch_size=config.batch_size, dtype=config.dtype, engine=config.engine,
                             batch_seconds=budget, long_audio_seconds=options.long_audio_seconds,
                             decode_graphs=config.decode_graphs, encoder_runtime=config.encoder_runtime)


def run_pass(loaded: LoadedModel, signals: list, batches: list[list[int]], options: TranscribeOptions,
             stages: Optional[dict] = None, counts: Optional[dict] = None) -> tuple[float, list]:
    """Transcribe every input once; returns wall seconds and the transcripts in input order."""
    transcripts: list = [None] * len(signals)
    sink: dict = {}
    with timed(loaded.device, sink, "total", counts):
        for batch in batches:
            for index, transcript in zip(batch, transcribe_signals(loaded, [signals[i] for i in batch], options,
                                                                   stages, counts)):
                transcripts[index] = transcript
    return sink["total"], transcripts


def stage_counts(counts: dict) -> Optional[dict]:
    """Per stage, what a counting backend counted (ops, host syncs, copies); 'other' is the rest
    of the run. None when no backend counts (real devices: see common/device/counters.py)."""
    if "total" not in counts:
        return None
    total = counts.pop("total")
    other = {k: v - sum(stage.get(k, 0) for stage in counts.values()) for k, v in total.items()}
    return {**counts, "other": other, "total": total}


def decoding_counts(counted: Optional[dict], batches: int, audio_seconds: float) -> Optional[dict]:
    """Device launches (ops dispatched, a graph replay being one) and host syncs of the decoding
    stage, per batch and per audio second: what graphs or a CPU decoder change. None without a
    counting backend or a decoding stage of its own (the nemo engine decodes inside transcribe())."""
    if not counted or "decoding" not in counted:
        return None
    stage = counted["decoding"]
    totals = {"launches": stage.get("ops", 0), "host_syncs": stage.get("host_syncs", 0),
              "graph_replays": stage.get("graph_replays", 0)}
    return {**totals,
            "per_batch": {k: round(v / batches, 2) for k, v in totals.items()},
            "per_audio_second": {k: round(v / audio_seconds, 2) if audio_seconds else None for k, v in totals.items()}}


@contextlib.contextmanager
def decoder_placed(loaded: LoadedModel, decoder_device: Optional[str]):
    """The loaded model with its TDT decoder and joint on `decoder_device` (None: where they are)
    for the block; moved back after. Untimed: a configuration's set-up."""
    target = decoder_device or loaded.decoder_device or loaded.device
    current = loaded.decoder_device or loaded.device
    if target == current:
        yield loaded
        return
    model = loaded.model
    model.decoder.to(target)
    model.joint.to(target)
    configure_decoding(model, target, timestamps=False)
    try:
        yield replace(loaded, decoder_device=None if target == loaded.device else target)
    finally:
        model.decoder.to(current)
        model.joint.to(current)
        configure_decoding(model, current, timestamps=False)


def stage_breakdown(stages: dict, total: float) -> dict:
    """Seconds and share of the run per stage; 'other' is what no stage covered (for the nemo
    engine that is its dataloader plus decoding, which runs outside any module it can hook)."""
    covered = {name: stages[name] for name in STAGE_NAMES if name in stages}
    covered["other"] = max(total - sum(covered.values()), 0.0)
    return {name: {"seconds": round(value, 5), "share": round(value / total, 4) if total else None}
            for name, value in covered.items()}


def benchmark(loaded: LoadedModel, signals: list, durations: list[float], config: PerfConfig,
              options: PerfOptions, first_call: bool) -> dict:
    """Warm-up, timed runs and the engine cross-check for one configuration."""
    with decoder_placed(loaded, config.decoder_device) as placed:
        return _benchmark(placed, signals, durations, config, options, first_call)


def _benchmark(loaded: LoadedModel, signals: list, durations: list[float], config: PerfConfig,
               options: PerfOptions, first_call: bool) -> dict:
    transcribe = pass_options(config, options)
    batches = batches_for(durations, transcribe)
    audio_seconds = sum(durations)
    result: dict = {"config": asdict(config), "batching": config.batching, "audio_seconds": round(audio_seconds, 4)}
    warmups = []
    for _ in range(options.warmup):
        warmups.append(run_pass(loaded, signals, batches, transcribe)[0])
    if first_call and warmups:
        result["first_call_seconds"] = round(warmups[0], 4)
    result["warmup_seconds"] = [round(w, 4) for w in warmups]
    reset_peak_memory(loaded.device)
    latencies, transcripts = [], None
    for _ in range(options.runs):
        seconds, transcripts = run_pass(loaded, signals, batches, transcribe)
        latencies.append(seconds)
    per_run_stages, stage_run_seconds, counted = [], [], None
    for _ in range(options.stage_runs):
        stages, counts = {}, {}
        seconds, _ = run_pass(loaded, signals, batches, transcribe, stages, counts)
        per_run_stages.append(stage_breakdown(stages, seconds))
        stage_run_seconds.append(round(seconds, 5))
        counted = stage_counts(counts)
    stats = latency_stats(latencies)
    texts = [t.text for t in transcripts]
    result.update({
        "batches": [[_batch_entry(i, durations[i], transcripts[i]) for i in b] for b in batches],
        "latencies": [round(x, 5) for x in latencies],
        "stats": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in stats.items()},
        "rtfx": round(rtfx(audio_seconds, stats["median"]), 3),
        "throughput": {"audio_seconds_per_second": round(rtfx(audio_seconds, stats["median"]), 3),
                       "files_per_second": round(len(signals) / stats["median"], 3)},
        # from the stage runs, not the timed ones: probes synchronize at every stage boundary
        "stages": per_run_stages,
        "stage_run_seconds": stage_run_seconds,  # each stage run's own total, probes included
        "stage_median": _median_stages(per_run_stages),
        # per stage, in the last stage run, where a counting backend is registered (common/device/counters.py)
        "host_syncs": {stage: c["host_syncs"] for stage, c in counted.items()} if counted else None,
        "counts": counted,
        "decoding_counts": decoding_counts(counted, len(batches), audio_seconds),
        "memory": memory_bytes(loaded.device),
        "texts": texts,
    })
    if options.check_engines and loaded.decoder_device is None:
        # the same batches (planned above) through the other engine
        other = replace(config, engine="batched" if config.engine == "nemo" else "nemo")
        other_texts = [t.text for t in run_pass(loaded, signals, batches, pass_options(other, options))[1]]
        result["engine_check"] = {"engines": [config.engine, other.engine], "identical": other_texts == texts,
                                  "differing_files": [i for i, (a, b) in enumerate(zip(texts, other_texts)) if a != b]}
    return result


def _batch_entry(index: int, duration: float, transcript) -> dict:
    entry = {"index": index, "duration": round(duration, 3)}
    if transcript.attention:  # long audio
        entry["attention"] = transcript.attention
    return entry


def _median_stages(per_run: list[dict]) -> dict:
    import statistics

    names = per_run[0].keys() if per_run else []
    return {name: round(statistics.median(run[name]["seconds"] for run in per_run), 5) for name in names}


def cold_start(import_seconds: float, loaded: LoadedModel) -> dict:
    return {"import_seconds": round(import_seconds, 3), "load_seconds": round(loaded.load_seconds, 3),
            "to_device_seconds": round(loaded.to_device_seconds, 3)}


def measure_cold_start(pool: ModelPool, source: ModelSource, device: str, inputs: PerfInputs, dtype: str,
                       import_seconds: float, long_audio_seconds: float = LONG_AUDIO_SECONDS,
                       engine: str = DEFAULT_ENGINE) -> dict:
    """Load the model and time its first transcription (the longest input, with `engine`), before
    anything else has run on it: what a user waits for the first time."""
    prepare_device(device, exact_fp32=dtype == "fp32")
    loaded = pool.get(source, device)
    longest = max(range(len(inputs.signals)), key=lambda i: inputs.durations[i])
    options = TranscribeOptions(batch_size=1, dtype=dtype, engine=engine, long_audio_seconds=long_audio_seconds)
    sink: dict = {}
    with timed(device, sink, "first_call"):
        transcribe_signals(loaded, [inputs.signals[longest]], options)
    return {**cold_start(import_seconds, loaded), "device": device,
            "first_call_seconds": round(sink["first_call"], 4), "first_call_input": inputs.paths[longest],
            "measured": "first thing after the checks, in this process: NeMo import, model load and move to "
                        "the device, then one transcription of the longest input, before any other stage ran"}


def device_ratios(results: list[dict]) -> list[dict]:
    """For configurations measured on several devices: median latency of each device relative to
    the first device listed (above 1: slower than the first)."""
    by_setting: dict = {}
    for result in results:
        cfg = result["config"]
        by_setting.setdefault((cfg["dtype"], cfg["engine"], cfg["batch_size"], cfg.get("batch_seconds"),
                               cfg.get("decode_graphs", "off"), cfg.get("decoder_device"),
                               cfg.get("encoder_runtime", "torch")), []).append(result)
    ratios = []
    for (dtype, engine, batch_size, batch_seconds, *_), group in by_setting.items():
        if len(group) < 2:
            continue
        base = group[0]
        for other in group[1:]:
            ratios.append({
                "dtype": dtype, "engine": engine, "batch_size": batch_size, "batch_seconds": batch_seconds,
                "base": base["config"]["device"], "other": other["config"]["device"],
                "latency_ratio": round(other["stats"]["median"] / base["stats"]["median"], 3),
                "rtfx": {base["config"]["device"]: base["rtfx"], other["config"]["device"]: other["rtfx"]},
            })
    return ratios


def run_perf(choices: list[DeviceChoice], source: ModelSource, pool: ModelPool, inputs: PerfInputs,
             sweep: PerfSweep, options: PerfOptions, import_seconds: float, command_line: str,
             progress: Optional[Callable[[PerfConfig], None]] = None) -> dict:
    """Every device x dtype x engine x batch size, models from the pool; the results document."""
    for choice in choices:  # before any model loads: --device auto is resolved only now
        if not sweep.configs(choice.device):
            raise SetupError(f"nothing to measure on {choice.device}: --encoder-runtime "
                             f"{','.join(sweep.encoder_runtimes)} runs the encoder on the CPU at fp32 only; "
                             "add torch to the list")
    results, cold, settings = [], {}, {}
    for choice in choices:
        settings[choice.device] = prepare_device(choice.device, exact_fp32=True)
        loaded = pool.get(source, choice.device)
        if loaded.timestamps:  # a model shared with an accuracy check: time decoding without timestamps
            configure_decoding(loaded.model, loaded.decoder_device or loaded.device, timestamps=False)
        cold[choice.device] = cold_start(import_seconds, loaded)
        configs = sweep.configs(choice.device)
        for number, config in enumerate(configs):
            if progress:
                progress(config)
            results.append(benchmark(loaded, inputs.signals, inputs.durations, config, options,
                                     first_call=number == 0))
        cold[choice.device]["first_call_seconds"] = results[-len(configs)].get("first_call_seconds")
        if loaded.timestamps:
            configure_decoding(loaded.model, loaded.decoder_device or loaded.device, timestamps=True)
    engines_ok = all(r.get("engine_check", {}).get("identical", True) for r in results)
    return {
        "timed": __doc__.strip(),
        "environment": collect_environment([c.device for c in choices], command_line),
        "model": {"spec": source.spec, "kind": source.kind, "note": source.note},
        "inputs": [{"path": p, "duration": round(d, 4)} for p, d in zip(inputs.paths, inputs.durations)],
        "input_errors": inputs.errors,
        "options": {"warmup": options.warmup, "runs": options.runs, "stage_runs": options.stage_runs,
                    "long_audio_seconds": options.long_audio_seconds,
                    **asdict(sweep)},
        "device_settings": settings,
        "cold_start": cold,
        "results": results,
        "ratios": device_ratios(results),
        "engines_identical": engines_ok,
        "ok": engines_ok and not inputs.errors,
    }
