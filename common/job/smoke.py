"""check_accuracy_run_perf.py's job: the environment checks alone (the dry-run), or the smoke
test: the checks, then accuracy (device vs CPU), then performance (device and CPU, timed as
inference.py runs by default), in one process, each (model, device) loaded once. With
`all_cards` the accuracy and performance stages run on every visible card in turn, against one
CPU reference: a health check of the host."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..checks.environment import checks_document, run_checks
from ..choices import DEFAULT_DTYPE, DEFAULT_ENGINE, DEFAULT_LOADER, LONG_AUDIO_SECONDS, MAX_WER, MIN_MATCH, WARMUP
from ..device.accelerators import DeviceChoice, resolve_device, visible_cards
from ..device.threads import use_threads
from ..engine.precision import check_dtype_for_device, cpu_precision_warning
from ..files import write_json_atomic
from ..inputs.sources import InputOptions, collect_inputs
from ..errors import SetupError
from ..measure.accuracy import AccuracyOptions, summarize
from ..measure.perf import PerfOptions, PerfSweep, load_signals, measure_cold_start, run_perf
from ..model.loading import ModelPool, describe, import_nemo_asr, resolve_model_source
from ..outputs.paths import check_writable_folder
from .accuracy import AccuracyRun, accuracy_check, add_card_verdicts, cards_summary_line, reference_sides_of

REFERENCE_DEVICE = "cpu"
ACCURACY_FILE = "accuracy.json"  # the accuracy stage's own results, beside report.json


@dataclass(frozen=True)
class SmokeOptions:
    model: str
    audio: tuple
    device: str = "auto"
    dtype: str = DEFAULT_DTYPE
    engine: str = DEFAULT_ENGINE  # the performance stage's and the cold start's (batching: PerfSweep's defaults)
    warmup: int = WARMUP
    runs: int = 3
    min_match: float = MIN_MATCH
    max_wer: float = MAX_WER
    quiet: bool = True
    debug: bool = False
    loader: str = DEFAULT_LOADER
    report_dir: Optional[str] = None  # the accuracy stage keeps its comparisons here as they finish
    resume: bool = False
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # the one long-audio rule, in every stage
    inputs: InputOptions = InputOptions()  # layout, columns, --limit
    threads: Optional[int] = None  # CPU threads; None: one per physical core
    all_cards: bool = False  # accuracy and perf on every visible card, not only `device`


def run_check(options: SmokeOptions, dry_run: bool, command_line: str,
              say: Callable[[str], None] = lambda _: None) -> tuple[dict, bool]:
    """The dry-run's checks document, or the smoke test's document (its accuracy results kept in
    `report_dir` as they finish); and whether it passed."""
    if dry_run:
        document = checks_document(run_checks(options.model, list(options.audio), options.device, options.inputs))
        return document, document["passed"]
    if options.all_cards and options.device.split(":")[0] == "cpu":
        raise SetupError("--all-cards checks the NPU or CUDA cards against the CPU: give --device npu, cuda or auto")
    if options.report_dir:
        prepare_report_dir(options.report_dir)
    start = time.perf_counter()
    import_nemo_asr(quiet=options.quiet)
    import_seconds = time.perf_counter() - start
    say(f"checks: model {describe(resolve_model_source(options.model))}, device {options.device} ...")
    document = run_smoke(options, command_line, import_seconds, say)
    return document, smoke_passed(document)


def prepare_report_dir(folder: str) -> None:
    """--report-dir made, or found writable, before anything heavy: a setup error (exit 2) up
    front rather than an OSError once the work is done."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise SetupError(f"--report-dir {folder}: is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SetupError(f"--report-dir {folder}: cannot be created ({error.strerror or error})") from None
    check_writable_folder(path, f"--report-dir {folder}")


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
    cards = _cards(target, options.all_cards)
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
                                                options.long_audio_seconds, options.engine)
    say(f"accuracy: comparing {', '.join(c.device for c in cards)} with the CPU ...")
    accuracy = _accuracy_stage(cards, reference, source, pool, options, command_line, say)
    document["accuracy"] = accuracy
    document["stages"]["accuracy"] = "passed" if accuracy["accuracy"]["verdict"]["passed"] else "failed"
    say("performance: timing the device and the CPU ...")
    devices = list({c.device: c for c in (*cards, reference)}.values())
    perf_options = PerfOptions(warmup=options.warmup, runs=options.runs, long_audio_seconds=options.long_audio_seconds)
    sweep = PerfSweep(dtypes=(options.dtype,), engines=(options.engine,))
    perf = run_perf(devices, source, pool, signals, sweep, perf_options, import_seconds, command_line)
    for device, cold in perf["cold_start"].items():  # perf's "first call" ran on a model accuracy had warmed
        cold["first_call_seconds"] = document["cold_start"]["first_call_seconds"] if device == target.device else None
    document["perf"] = perf
    document["stages"]["perf"] = "passed" if perf["ok"] else "failed"
    document["model_loads"] = [{"model": spec, "device": device} for spec, device in pool.loads]
    return document


def smoke_passed(document: dict) -> bool:
    return all(state == "passed" for state in document["stages"].values())


def _cards(target: DeviceChoice, all_cards: bool) -> list[DeviceChoice]:
    """The cards the accuracy and perf stages run on: the target, or every visible card of its kind."""
    if not all_cards:
        return [target]
    cards = [card for card in visible_cards() if card.split(":")[0] == target.type]
    if not cards:
        raise SetupError(f"--all-cards: no NPU or CUDA card to check (--device {target.device}; the CPU is "
                         "the reference)")
    return [resolve_device(card) for card in cards]


def _accuracy_stage(cards: list[DeviceChoice], reference: DeviceChoice, source, pool: ModelPool,
                    options: SmokeOptions, command_line: str, say) -> dict:
    """Every card against the CPU; the reference transcribed once, on the first card's pass.
    Each card keeps its comparisons (durable, resumable) in its own file of the report folder."""
    items = collect_inputs(list(options.audio), options.inputs)
    accuracy_options = AccuracyOptions(dtype=options.dtype, warmup=options.warmup, min_match=options.min_match,
                                       max_wer=options.max_wer, debug=options.debug,
                                       long_audio_seconds=options.long_audio_seconds, seed=options.inputs.seed)
    documents, sides = [], None
    for card in cards:
        name = ACCURACY_FILE if len(cards) == 1 else f"accuracy.{card.device.replace(':', '')}.json"
        output = os.path.join(options.report_dir, name) if options.report_dir else None
        run = AccuracyRun(output=output, resume=options.resume, command_line=command_line, say=say,
                          reference_sides=sides)
        documents.append(accuracy_check(card, reference, source, source, pool, items, accuracy_options, run,
                                        _publisher(output)))
        sides = sides or reference_sides_of(documents[0])
    if len(cards) == 1:
        return documents[0]
    combined = _cards_document(documents, accuracy_options)
    _publisher(os.path.join(options.report_dir, ACCURACY_FILE) if options.report_dir else None)(combined)
    return combined


def _publisher(output: Optional[str]) -> Callable[[dict], None]:
    return (lambda document: write_json_atomic(output, document)) if output else (lambda document: None)


def _cards_document(documents: list[dict], options: AccuracyOptions) -> dict:
    """One accuracy document for several cards: all comparisons, a verdict per card."""
    files = [f for document in documents for f in document["accuracy"]["files"]]
    result = summarize(files, options)
    add_card_verdicts(result, files, options, {})
    return {**documents[0], "accuracy": result, "summary": cards_summary_line(result),
            "targets": [document["target"] for document in documents],
            "inputs": documents[0]["inputs"]}
