"""Accuracy, file by file: the same audio through the model on the target device (at the chosen
precision) and on the reference device (fp32), compared with each other and with the ground
truth where there is one; or, with no reference, the device against the truth alone (one pass).
Every figure is named by the comparison behind it (`DEVICE_VS_REFERENCE`, `DEVICE_VS_TRUTH`,
`REFERENCE_VS_TRUTH`), in the results and in every report made from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..choices import (DEFAULT_DTYPE, DEFAULT_ENCODER_RUNTIME, DEFAULT_ENGINE, DEFAULT_GRAPH_MODE, LONG_AUDIO_SECONDS,
                       MAX_WER, MIN_MATCH, WARMUP)
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

DEVICE_VS_REFERENCE = "device vs reference"
DEVICE_VS_TRUTH = "device vs truth"
REFERENCE_VS_TRUTH = "reference vs truth"

@dataclass(frozen=True)
class AccuracyOptions:
    dtype: str = DEFAULT_DTYPE  # the target's precision; the reference is always fp32
    warmup: int = WARMUP  # untimed runs per model before the first timed file
    min_match: float = MIN_MATCH  # device vs reference
    max_wer: float = MAX_WER  # device vs reference
    max_truth_wer: Optional[float] = None  # device vs truth; None: reported, not judged
    with_reference: bool = True  # False: no reference side, the device against the truth only
    debug: bool = False
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # the same long-audio rule on both sides
    seed: int = 0  # the bootstrap's resampling (confidence intervals)
    decode_graphs: str = DEFAULT_GRAPH_MODE  # --decode-graphs (applies where decoding runs on an npu)
    encoder_runtime: str = DEFAULT_ENCODER_RUNTIME  # the target's; the reference's encoder is always torch's

    def side(self, dtype: str, encoder_runtime: str = DEFAULT_ENCODER_RUNTIME) -> TranscribeOptions:
        """How one side transcribes: inference.py's engine, one file at a time (a file's text
        never depends on its batch mates), word timestamps, at `dtype`."""
        return TranscribeOptions(batch_size=1, timestamp_kinds=("word",), dtype=dtype, engine=DEFAULT_ENGINE,
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


def compare_file(target: Callable[[object], dict], reference: Optional[Callable[[object], dict]],
                 item: AudioInput, truth: Optional[str]) -> dict:
    """The comparison entry of one input; `target` and `reference` give a side for a signal (no
    `reference`: the device side alone, scored against the truth)."""
    entry: dict = {"path": item.path, **_id_of(item), "duration": None, "error": item.error}
    if item.error:
        return entry
    if item.warning:
        entry["warning"] = item.warning
    signal = read_signal(item)
    entry["duration"] = round(duration_seconds(signal), 4)
    if reference is None:
        entry["device"] = target(signal)
    else:
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
        normalized = normalize_english(truth)
        entry["truth"] = {"text": truth, **{side: error_rates(normalized, normalize_english(entry[side]["text"]))
                                            for side in ("reference", "device") if side in entry}}
    return entry


def failed_entry(item: AudioInput, error: Exception) -> dict:
    message = str(error) if isinstance(error, ToolkitError) else \
        f"{item.path}: transcription failed ({type(error).__name__}: {error})"
    return {"path": item.path, **_id_of(item), "duration": None, "error": message}


def _id_of(item: AudioInput) -> dict:
    """The test set's id of the input (a Kaldi or LibriSpeech utterance id, a dataset's or
    manifest's id), so that results join back to it; nothing when it has none."""
    return {} if item.id is None else {"id": item.id}


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
    """Per-file entries, the aggregate, its headline (every figure named by its comparison) and
    the verdict against the thresholds."""
    aggregate = aggregate_results(files, options.seed, options.with_reference)
    return {"files": files, "aggregate": aggregate, "headline": headline(aggregate),
            "verdict": verdict(aggregate, options)}


def aggregate_results(files: list[dict], seed: int = 0, with_reference: bool = True) -> dict:
    """Counts, the device-vs-reference figures (with a reference), timing per side, and the
    figures of each side against the truth (where files have one)."""
    compared = [f for f in files if not f.get("error")]
    sides = ("reference", "device") if with_reference else ("device",)
    aggregate = {"files": len(files), "compared": len(compared), "errors": len(files) - len(compared),
                 **(_device_vs_reference(compared, seed) if with_reference else {}),
                 "timing": {side: _timing_totals(compared, side) for side in sides}}
    with_truth = [f for f in compared if "truth" in f]
    if with_truth:
        truths = [normalize_english(f["truth"]["text"]) for f in with_truth]
        aggregate["truth"] = {"files": len(with_truth), **{
            side: corpus_error_rates(truths, [normalize_english(f[side]["text"]) for f in with_truth])
            for side in sides}}
        counts = []
        for f, truth in zip(with_truth, truths):
            f["truth"]["counts"] = {side: utterance_counts(truth, normalize_english(f[side]["text"]))
                                    for side in sides}
            counts.append(f["truth"]["counts"])
        aggregate["truth"]["confidence"] = truth_statistics(counts, seed)
        aggregate["truth"]["worst"] = worst_utterances(with_truth)
    return aggregate


def _device_vs_reference(compared: list[dict], seed: int) -> dict:
    offsets = [aligned_word_offsets(f["reference"]["words"], f["device"]["words"]) for f in compared]
    return {
        "exact_matches": sum(f["match"] for f in compared),
        "match_rate": (sum(f["match"] for f in compared) / len(compared)) if compared else None,
        **corpus_error_rates([f["reference"]["text"] for f in compared], [f["device"]["text"] for f in compared]),
        "confidence": _device_vs_reference_intervals(compared, seed),
        "drift": summarize_drift([s for pair in offsets for s in pair[0]], [e for pair in offsets for e in pair[1]]),
    }


def headline(aggregate: dict) -> list[dict]:
    """Every WER/CER/match figure of the run, each with the comparison behind it: device vs
    reference (with a reference), device vs truth and reference vs truth (where there is truth).
    A figure's `value` is the corpus rate (jiwer's), `ci95` its bootstrap interval."""
    rows = []
    if "match_rate" in aggregate:
        intervals = aggregate["confidence"]
        rows.append({"comparison": DEVICE_VS_REFERENCE, "files": aggregate["compared"],
                     "exact_matches": aggregate["exact_matches"], "match_rate": aggregate["match_rate"],
                     "wer": {"value": aggregate["wer"], "ci95": intervals["wer"]["ci95"]},
                     "cer": {"value": aggregate["cer"], "ci95": intervals["cer"]["ci95"]}})
    truth = aggregate.get("truth")
    for side, comparison in (("device", DEVICE_VS_TRUTH), ("reference", REFERENCE_VS_TRUTH)):
        if truth and side in truth:
            intervals = truth["confidence"][side]
            rows.append({"comparison": comparison, "files": truth["files"],
                         "wer": {"value": truth[side]["wer"], "ci95": intervals["wer"]["ci95"]},
                         "cer": {"value": truth[side]["cer"], "ci95": intervals["cer"]["ci95"]}})
    return rows


def _device_vs_reference_intervals(compared: list[dict], seed: int) -> dict:
    counts = [utterance_counts(f["reference"]["text"], f["device"]["text"]) for f in compared]
    return {"wer": with_interval([c["word_errors"] for c in counts], [c["words"] for c in counts], seed),
            "cer": with_interval([c["char_errors"] for c in counts], [c["chars"] for c in counts], seed),
            "bootstrap": {"resamples": RESAMPLES, "level": LEVEL, "seed": seed, "unit": "utterance"}}


def worst_utterances(with_truth: list[dict], limit: int = 10) -> list[dict]:
    """The utterances with the most device word errors against the truth (ties: the longer first);
    `wer` is device vs truth, `reference_wer` (with a reference) reference vs truth."""
    ranked = sorted(with_truth, key=lambda f: (-f["truth"]["counts"]["device"]["word_errors"],
                                               -f["truth"]["counts"]["device"]["words"]))
    return [{"path": f["path"], **({"id": f["id"]} if f.get("id") is not None else {}), "duration": f["duration"],
             "word_errors": f["truth"]["counts"]["device"]["word_errors"],
             "words": f["truth"]["counts"]["device"]["words"], "wer": f["truth"]["device"]["wer"],
             **({"reference_wer": f["truth"]["reference"]["wer"]} if "reference" in f["truth"] else {}),
             "truth": f["truth"]["text"], "device": f["device"]["text"]}
            for f in ranked[:limit] if f["truth"]["counts"]["device"]["word_errors"] > 0]


def _timing_totals(compared: list[dict], side: str) -> dict:
    """Seconds and RTFx over the files timed on this side (reused reference sides have no time)."""
    timed_files = [f for f in compared if f[side].get("latency") is not None]
    audio = sum(f["duration"] for f in timed_files)
    seconds = sum(f[side]["latency"] for f in timed_files)
    return {"audio_seconds": round(audio, 3), "seconds": round(seconds, 4),
            "rtfx": round(rtfx(audio, seconds), 3) if timed_files else None}


def verdict(aggregate: dict, options: AccuracyOptions) -> dict:
    """Passed when every file was compared and each threshold holds: device vs reference
    (--min-match, --max-wer) with a reference, device vs truth (--max-truth-wer) when given."""
    failures = []
    if aggregate["errors"]:
        failures.append(f"{aggregate['errors']} file(s) could not be compared")
    thresholds: dict = {}
    if options.with_reference:
        thresholds.update(min_match=options.min_match, max_wer=options.max_wer)
    if options.max_truth_wer is not None:
        thresholds["max_truth_wer"] = options.max_truth_wer
    if aggregate["compared"] == 0:
        failures.append("no file was compared")
        return {"passed": False, "failures": failures, "thresholds": thresholds}
    if options.with_reference:
        if aggregate["match_rate"] < options.min_match:
            failures.append(f"{DEVICE_VS_REFERENCE}: match rate {aggregate['match_rate']:.3f} < --min-match "
                            f"{options.min_match:g}")
        if aggregate["wer"] > options.max_wer:
            failures.append(f"{DEVICE_VS_REFERENCE}: WER {aggregate['wer']:.4f} > --max-wer {options.max_wer:g}")
    if options.max_truth_wer is not None:
        truth_wer = (aggregate.get("truth") or {}).get("device", {}).get("wer")
        if truth_wer is None:
            failures.append(f"{DEVICE_VS_TRUTH}: no compared file has a ground truth to hold to --max-truth-wer")
        elif truth_wer > options.max_truth_wer:
            failures.append(f"{DEVICE_VS_TRUTH}: WER {truth_wer:.4f} > --max-truth-wer {options.max_truth_wer:g}")
    return {"passed": not failures, "failures": failures, "thresholds": thresholds}


def summary_line(result: dict) -> str:
    """The one-line verdict: PASS or FAIL, the figures the thresholds judge, each named by its
    comparison, and the thresholds (or the failures)."""
    agg, ver = result["aggregate"], result["verdict"]
    facts = "; ".join(_headline_facts(row) for row in headline(agg) if row["comparison"] != REFERENCE_VS_TRUTH) \
        if agg["compared"] else "no file compared"
    if not ver["passed"]:
        return f"FAIL: {facts}; " + "; ".join(ver["failures"])
    limits = ver["thresholds"]
    judged = ([f"{DEVICE_VS_REFERENCE} match >= {limits['min_match']:g}, WER <= {limits['max_wer']:g}"]
              if "min_match" in limits else []) + \
        ([f"{DEVICE_VS_TRUTH} WER <= {limits['max_truth_wer']:g}"] if "max_truth_wer" in limits else [])
    return f"PASS: {facts} " + (f"(thresholds: {'; '.join(judged)})" if judged else
                                "(no threshold: --max-truth-wer not given)")


def _headline_facts(row: dict) -> str:
    rates = f"WER {_rate(row['wer']['value'])}, CER {_rate(row['cer']['value'])}"
    if "exact_matches" in row:
        return f"{row['comparison']}: {row['exact_matches']}/{row['files']} files match exactly, {rates}"
    return f"{row['comparison']} ({row['files']} file(s)): {rates}"


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"
