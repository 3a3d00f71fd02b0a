"""Device-vs-reference accuracy: the same audio through the model on the target device (at the
chosen precision) and on the reference device (fp32), compared file by file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..choices import LONG_AUDIO_SECONDS
from ..device.clocks import rtfx, timed
from ..engine.transcriber import TranscribeOptions, transcribe_signals
from ..errors import ToolkitError
from ..inputs.audio import duration_seconds
from ..inputs.sources import AudioInput, read_signal
from ..model.loading import LoadedModel
from ..signals import raise_unless_per_file
from .compare import (
    aligned_word_offsets,
    corpus_error_rates,
    error_rates,
    normalize_english,
    summarize_drift,
    timestamp_drift,
    word_differences,
)
from .confidence import LEVEL, RESAMPLES, truth_statistics, utterance_counts, with_interval


@dataclass(frozen=True)
class AccuracyOptions:
    dtype: str = "fp32"  # the target's precision; the reference is always fp32
    warmup: int = 1  # untimed runs per model before the first timed file
    min_match: float = 1.0
    max_wer: float = 0.0
    debug: bool = False
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # the same long-audio rule on both sides
    seed: int = 0  # the bootstrap's resampling (confidence intervals)
    decode_graphs: str = "off"  # --decode-graphs (applies where decoding runs on an npu)
    encoder_runtime: str = "torch"  # the target's; the reference's encoder is always torch's

    def side(self, dtype: str, encoder_runtime: str = "torch") -> TranscribeOptions:
        """How one side transcribes: one file at a time, word timestamps, at `dtype`."""
        return TranscribeOptions(batch_size=1, timestamp_kinds=("word",), dtype=dtype,
                                 long_audio_seconds=self.long_audio_seconds, decode_graphs=self.decode_graphs,
                                 encoder_runtime=encoder_runtime)

    def target_side(self) -> TranscribeOptions:
        return self.side(self.dtype, self.encoder_runtime)


def _timed_transcript(loaded: LoadedModel, signal, options: TranscribeOptions) -> tuple:
    sink: dict = {}
    with timed(loaded.device, sink, "seconds"):
        transcript = transcribe_signals(loaded, [signal], options)[0]
    return transcript, sink["seconds"]


def transcribe_side(loaded: LoadedModel, signal, options: TranscribeOptions) -> dict:
    """One device's side of a comparison: text, word timestamps, latency and RTFx, and the
    attention when long audio switched it."""
    transcript, seconds = _timed_transcript(loaded, signal, options)
    duration = duration_seconds(signal)
    side = {"text": transcript.text, "words": [w.to_dict("word") for w in transcript.timestamps["word"]],
            "latency": round(seconds, 4), "rtfx": round(rtfx(duration, seconds), 3)}
    if transcript.attention:
        side["attention"] = transcript.attention
    return side


def compare_file(target: Callable[[object], dict], reference: Callable[[object], dict], item: AudioInput,
                 truth: Optional[str]) -> dict:
    """The comparison entry of one input; `target` and `reference` give a side for a signal."""
    entry: dict = {"path": item.path, "duration": None, "error": item.error}
    if item.error:
        return entry
    if item.warning:
        entry["warning"] = item.warning
    signal = read_signal(item)
    entry["duration"] = round(duration_seconds(signal), 4)
    ref, dev = reference(signal), target(signal)
    entry.update({
        "reference": ref,
        "device": dev,
        "match": dev["text"] == ref["text"],
        **error_rates(ref["text"], dev["text"]),
        "differences": word_differences(ref["text"], dev["text"]),
        "drift": timestamp_drift(ref["words"], dev["words"]),
    })
    if truth is not None:
        entry["truth"] = {"text": truth,
                          "reference": error_rates(normalize_english(truth), normalize_english(ref["text"])),
                          "device": error_rates(normalize_english(truth), normalize_english(dev["text"]))}
    return entry


def failed_entry(item: AudioInput, error: Exception) -> dict:
    message = str(error) if isinstance(error, ToolkitError) else \
        f"{item.path}: transcription failed ({type(error).__name__}: {error})"
    return {"path": item.path, "duration": None, "error": message}


def warm_up(target: LoadedModel, reference: Optional[LoadedModel], items: list[AudioInput],
            options: AccuracyOptions) -> None:
    """Untimed runs on the first file that reads and transcribes, so first-call costs do not land
    in the timings; a file that fails here is left to its own comparison to report."""
    for item in items:
        if item.error:
            continue
        try:
            signal = read_signal(item)
            for _ in range(options.warmup):
                if reference is not None:
                    _timed_transcript(reference, signal, options.side("fp32"))
                _timed_transcript(target, signal, options.target_side())
        except Exception as error:
            raise_unless_per_file(error, options.debug)
            continue
        return


def summarize(files: list[dict], options: AccuracyOptions) -> dict:
    """Per-file entries, the aggregate and the verdict against the thresholds."""
    aggregate = aggregate_results(files, options.seed)
    return {"files": files, "aggregate": aggregate, "verdict": verdict(aggregate, options)}


def aggregate_results(files: list[dict], seed: int = 0) -> dict:
    compared = [f for f in files if not f.get("error")]
    offsets = [aligned_word_offsets(f["reference"]["words"], f["device"]["words"]) for f in compared]
    starts = [s for pair in offsets for s in pair[0]]
    ends = [e for pair in offsets for e in pair[1]]
    aggregate = {
        "files": len(files),
        "compared": len(compared),
        "errors": len(files) - len(compared),
        "exact_matches": sum(f["match"] for f in compared),
        "match_rate": (sum(f["match"] for f in compared) / len(compared)) if compared else None,
        **corpus_error_rates([f["reference"]["text"] for f in compared], [f["device"]["text"] for f in compared]),
        "confidence": _device_vs_reference_intervals(compared, seed),
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
        counts = []
        for f, truth in zip(with_truth, truths):
            f["truth"]["counts"] = {side: utterance_counts(truth, normalize_english(f[side]["text"]))
                                    for side in ("device", "reference")}
            counts.append(f["truth"]["counts"])
        aggregate["truth"]["confidence"] = truth_statistics(counts, seed)
        aggregate["truth"]["worst"] = worst_utterances(with_truth)
    return aggregate


def _device_vs_reference_intervals(compared: list[dict], seed: int) -> dict:
    counts = [utterance_counts(f["reference"]["text"], f["device"]["text"]) for f in compared]
    return {"wer": with_interval([c["word_errors"] for c in counts], [c["words"] for c in counts], seed),
            "cer": with_interval([c["char_errors"] for c in counts], [c["chars"] for c in counts], seed),
            "bootstrap": {"resamples": RESAMPLES, "level": LEVEL, "seed": seed, "unit": "utterance"}}


def worst_utterances(with_truth: list[dict], limit: int = 10) -> list[dict]:
    """The utterances with the most device word errors against the truth (ties: the longer first)."""
    ranked = sorted(with_truth, key=lambda f: (-f["truth"]["counts"]["device"]["word_errors"],
                                               -f["truth"]["counts"]["device"]["words"]))
    return [{"path": f["path"], "duration": f["duration"], "word_errors": f["truth"]["counts"]["device"]["word_errors"],
             "words": f["truth"]["counts"]["device"]["words"], "wer": f["truth"]["device"]["wer"],
             "reference_wer": f["truth"]["reference"]["wer"], "truth": f["truth"]["text"],
             "device": f["device"]["text"]}
            for f in ranked[:limit] if f["truth"]["counts"]["device"]["word_errors"] > 0]


def _timing_totals(compared: list[dict], side: str) -> dict:
    """Seconds and RTFx over the files timed on this side (reused reference sides have no time)."""
    timed_files = [f for f in compared if f[side].get("latency") is not None]
    audio = sum(f["duration"] for f in timed_files)
    seconds = sum(f[side]["latency"] for f in timed_files)
    return {"audio_seconds": round(audio, 3), "seconds": round(seconds, 4),
            "rtfx": round(rtfx(audio, seconds), 3) if timed_files else None}


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
