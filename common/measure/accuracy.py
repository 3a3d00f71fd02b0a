"""Device-vs-reference accuracy: the same audio through the model on the target device (at the
chosen precision) and on the reference device (fp32), compared file by file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from ..inputs.audio import duration_seconds, load_audio
from .compare import (NORMALIZER, aligned_word_offsets, corpus_error_rates, error_rates, normalize_english,
                      summarize_drift, word_differences)
from ..device.accelerators import DeviceChoice, device_name, prepare_device
from ..device.environment import collect_environment
from ..errors import ToolkitError
from ..inputs.sources import AudioInput
from ..model.loading import LoadedModel, ModelPool, ModelSource
from ..device.clocks import rtfx, timed
from ..engine.transcriber import TranscribeOptions, transcribe_signals


@dataclass(frozen=True)
class AccuracyOptions:
    dtype: str = "fp32"  # the target's precision; the reference is always fp32
    warmup: int = 1  # untimed runs per model before the first timed file
    min_match: float = 1.0
    max_wer: float = 0.0
    debug: bool = False


def _timed_transcript(loaded: LoadedModel, signal, dtype: str) -> tuple:
    options = TranscribeOptions(batch_size=1, timestamp_kinds=("word",), dtype=dtype)
    sink: dict = {}
    with timed(loaded.device, sink, "seconds"):
        transcript = transcribe_signals(loaded, [signal], options)[0]
    return transcript, sink["seconds"]


def _side(transcript, seconds: float, duration: float) -> dict:
    return {"text": transcript.text, "latency": round(seconds, 4), "rtfx": round(rtfx(duration, seconds), 3)}


def compare_file(target: LoadedModel, reference: LoadedModel, item: AudioInput, dtype: str,
                 truth: Optional[str]) -> dict:
    entry: dict = {"path": item.path, "duration": None, "error": item.error}
    if item.error:
        return entry
    signal = load_audio(item.path)
    duration = duration_seconds(signal)
    entry["duration"] = round(duration, 4)
    ref, ref_seconds = _timed_transcript(reference, signal, "fp32")
    dev, dev_seconds = _timed_transcript(target, signal, dtype)
    entry.update({
        "reference": _side(ref, ref_seconds, duration),
        "device": _side(dev, dev_seconds, duration),
        "match": dev.text == ref.text,
        **error_rates(ref.text, dev.text),
        "differences": word_differences(ref.text, dev.text),
        "_offsets": aligned_word_offsets(ref.timestamps["word"], dev.timestamps["word"]),
    })
    if truth is not None:
        entry["truth"] = {"text": truth, "reference": error_rates(normalize_english(truth), normalize_english(ref.text)),
                          "device": error_rates(normalize_english(truth), normalize_english(dev.text))}
    return entry


def warm_up(target: LoadedModel, reference: LoadedModel, items: list[AudioInput], options: AccuracyOptions) -> None:
    """Untimed runs on the first readable file, so first-call costs do not land in the timings."""
    for item in items:
        if item.error:
            continue
        try:
            signal = load_audio(item.path)
        except ToolkitError:
            continue
        for _ in range(options.warmup):
            _timed_transcript(reference, signal, "fp32")
            _timed_transcript(target, signal, options.dtype)
        return


def run_accuracy(target: LoadedModel, reference: LoadedModel, items: Iterable[AudioInput],
                 options: AccuracyOptions, reference_text: Optional[str] = None, progress: bool = False) -> dict:
    """Per-file comparisons, the aggregate and the verdict against the thresholds."""
    from tqdm import tqdm

    items = list(items)
    warm_up(target, reference, items, options)
    files = []
    for item in tqdm(items, unit="file", disable=not progress, leave=False):
        truth = item.text if item.text is not None else reference_text
        try:
            files.append(compare_file(target, reference, item, options.dtype, truth))
        except Exception as error:
            if options.debug:
                raise
            message = str(error) if isinstance(error, ToolkitError) else \
                f"{item.path}: transcription failed ({type(error).__name__}: {error})"
            files.append({"path": item.path, "duration": None, "error": message})
    aggregate = aggregate_results(files)
    for entry in files:
        if "_offsets" in entry:
            entry["drift"] = summarize_drift(*entry.pop("_offsets"))
    return {"files": files, "aggregate": aggregate, "verdict": verdict(aggregate, options)}


def aggregate_results(files: list[dict]) -> dict:
    compared = [f for f in files if not f.get("error")]
    starts = [s for f in compared for s in f["_offsets"][0]]
    ends = [e for f in compared for e in f["_offsets"][1]]
    aggregate = {
        "files": len(files),
        "compared": len(compared),
        "errors": len(files) - len(compared),
        "exact_matches": sum(f["match"] for f in compared),
        "match_rate": (sum(f["match"] for f in compared) / len(compared)) if compared else None,
        **corpus_error_rates([f["reference"]["text"] for f in compared], [f["device"]["text"] for f in compared]),
        "drift": summarize_drift(starts, ends),
        "timing": {side: _timing_totals(compared, side) for side in ("reference", "device")},
    }
    with_truth = [f for f in compared if "truth" in f]
    if with_truth:
        truths = [normalize_english(f["truth"]["text"]) for f in with_truth]
        aggregate["truth"] = {
            "files": len(with_truth),
            "reference": corpus_error_rates(truths, [normalize_english(f["reference"]["text"]) for f in with_truth]),
            "device": corpus_error_rates(truths, [normalize_english(f["device"]["text"]) for f in with_truth]),
        }
    return aggregate


def _timing_totals(compared: list[dict], side: str) -> dict:
    audio = sum(f["duration"] for f in compared)
    seconds = sum(f[side]["latency"] for f in compared)
    return {"audio_seconds": round(audio, 3), "seconds": round(seconds, 4),
            "rtfx": round(rtfx(audio, seconds), 3) if compared else None}


def verdict(aggregate: dict, options: AccuracyOptions) -> dict:
    failures = []
    if aggregate["errors"]:
        failures.append(f"{aggregate['errors']} file(s) could not be compared")
    if aggregate["compared"] == 0:
        failures.append("no file was compared")
    else:
        if aggregate["match_rate"] < options.min_match:
            failures.append(f"match rate {aggregate['match_rate']:.3f} < --min-match {options.min_match:g}")
        if aggregate["wer"] > options.max_wer:
            failures.append(f"WER {aggregate['wer']:.4f} > --max-wer {options.max_wer:g}")
    return {"passed": not failures, "failures": failures,
            "thresholds": {"min_match": options.min_match, "max_wer": options.max_wer}}


def summary_line(result: dict) -> str:
    agg, ver = result["aggregate"], result["verdict"]
    if agg["compared"]:
        facts = (f"{agg['exact_matches']}/{agg['compared']} files match exactly, "
                 f"WER {agg['wer']:.4f}, CER {agg['cer']:.4f}")
    else:
        facts = "no file compared"
    if ver["passed"]:
        return (f"PASS: {facts} (thresholds: match >= {ver['thresholds']['min_match']:g}, "
                f"WER <= {ver['thresholds']['max_wer']:g})")
    return f"FAIL: {facts}; " + "; ".join(ver["failures"])


def accuracy_check(target: DeviceChoice, reference: DeviceChoice, target_source: ModelSource,
                   reference_source: ModelSource, pool: ModelPool, items: list[AudioInput],
                   options: AccuracyOptions, command_line: str, reference_text: Optional[str] = None,
                   progress: bool = False) -> dict:
    """Prepare both devices, get both models from the pool, compare; the results document."""
    settings = prepare_device(target.device, exact_fp32=options.dtype == "fp32")
    prepare_device(reference.device, exact_fp32=True)
    result = run_accuracy(pool.get(target_source, target.device), pool.get(reference_source, reference.device),
                          items, options, reference_text, progress)
    return {
        "environment": collect_environment([target.device, reference.device], command_line),
        "model": {"spec": target_source.spec, "kind": target_source.kind, "note": target_source.note},
        "reference_model": {"spec": reference_source.spec, "kind": reference_source.kind},
        "target": {"device": target.device, "name": device_name(target.device), "dtype": options.dtype,
                   "settings": settings, "reason": target.reason},
        "reference": {"device": reference.device, "name": device_name(reference.device), "dtype": "fp32"},
        "inputs": [item.path for item in items],
        "normalizer": NORMALIZER,
        "accuracy": result,
        "summary": summary_line(result),
    }
