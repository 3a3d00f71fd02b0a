"""The one-command smoke test: dry-run checks, then accuracy (device vs CPU), then performance
(device and CPU), in one process, each (model, device) loaded once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from ..checks.environment import checks_document, run_checks
from ..device.accelerators import resolve_device
from ..device.threads import use_threads
from ..engine.precision import check_dtype_for_device, cpu_precision_warning
from ..engine.transcriber import LONG_AUDIO_SECONDS
from ..files import write_json_atomic
from ..inputs.sources import InputOptions, collect_inputs
from ..measure.accuracy import AccuracyOptions
from ..measure.perf import PerfOptions, PerfSweep, load_signals, measure_cold_start, run_perf
from ..model.loading import ModelPool, resolve_model_source
from .accuracy import AccuracyRun, accuracy_check

REFERENCE_DEVICE = "cpu"
ACCURACY_FILE = "accuracy.json"  # the accuracy stage's own results, beside report.json


@dataclass(frozen=True)
class SmokeOptions:
    model: str
    audio: tuple
    device: str = "auto"
    dtype: str = "fp32"
    warmup: int = 1
    runs: int = 3
    min_match: float = 1.0
    max_wer: float = 0.0
    quiet: bool = True
    debug: bool = False
    loader: str = "fast"
    report_dir: Optional[str] = None  # the accuracy stage keeps its comparisons here as they finish
    resume: bool = False
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # the one long-audio rule, in every stage
    inputs: InputOptions = InputOptions()  # layout, columns, --limit
    threads: Optional[int] = None  # CPU threads; None: one per physical core


def run_smoke(options: SmokeOptions, command_line: str, import_seconds: float,
              say: Callable[[str], None] = lambda _: None) -> dict:
    """Each stage's document, stopping after the checks if any FAILs; `stages` says what ran."""
    document: dict = {"stages": {}, "model_loads": []}
    checks = checks_document(run_checks(options.model, list(options.audio), options.device, options.inputs))
    document["checks"] = checks
    document["stages"]["checks"] = "passed" if checks["passed"] else "failed"
    if not checks["passed"]:
        return document
    target = resolve_device(options.device)
    check_dtype_for_device(options.dtype, target.device)
    if target.warning:
        say(f"warning: {target.warning}")
    threads = use_threads(options.threads)
    say(f"device: {target.device} ({target.reason}); {threads} CPU thread(s)")
    slow = cpu_precision_warning(options.dtype) if target.device == "cpu" else None
    if slow:
        say(f"warning: {slow}")
    reference = resolve_device(REFERENCE_DEVICE)
    source = resolve_model_source(options.model)
    pool = ModelPool(timestamps=True, quiet=options.quiet, loader=options.loader)
    signals = load_signals(list(options.audio), options.inputs)
    say("cold start: loading the model and timing its first call ...")
    document["cold_start"] = measure_cold_start(pool, source, target.device, signals, options.dtype, import_seconds,
                                                options.long_audio_seconds)
    say("accuracy: comparing the device with the CPU ...")
    output = os.path.join(options.report_dir, ACCURACY_FILE) if options.report_dir else None
    accuracy_run = AccuracyRun(output=output, resume=options.resume, command_line=command_line, say=say)

    def publish(accuracy_document: dict) -> None:
        if output:
            write_json_atomic(output, accuracy_document)

    accuracy = accuracy_check(
        target, reference, source, source, pool, collect_inputs(list(options.audio), options.inputs),
        AccuracyOptions(dtype=options.dtype, warmup=options.warmup, min_match=options.min_match,
                        max_wer=options.max_wer, debug=options.debug,
                        long_audio_seconds=options.long_audio_seconds, seed=options.inputs.seed),
        accuracy_run, publish)
    document["accuracy"] = accuracy
    document["stages"]["accuracy"] = "passed" if accuracy["accuracy"]["verdict"]["passed"] else "failed"
    say("performance: timing the device and the CPU ...")
    devices = list({c.device: c for c in (target, reference)}.values())
    perf_options = PerfOptions(warmup=options.warmup, runs=options.runs, long_audio_seconds=options.long_audio_seconds)
    perf = run_perf(devices, source, pool, signals, PerfSweep(dtypes=(options.dtype,)), perf_options, import_seconds,
                    command_line)
    for device, cold in perf["cold_start"].items():  # perf's "first call" ran on a model accuracy had warmed
        cold["first_call_seconds"] = document["cold_start"]["first_call_seconds"] if device == target.device else None
    document["perf"] = perf
    document["stages"]["perf"] = "passed" if perf["ok"] else "failed"
    document["model_loads"] = [{"model": spec, "device": device} for spec, device in pool.loads]
    return document


def smoke_passed(document: dict) -> bool:
    return all(state == "passed" for state in document["stages"].values())
