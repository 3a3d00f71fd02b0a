"""WER that can be trusted: corpus WER/CER with a 95% bootstrap confidence interval.

Utterances are resampled with replacement (seeded, so a run can be repeated exactly); each
resample's corpus rate is its summed errors over its summed reference length, as the point
estimate is. The paired difference (device minus reference, both against the truth) resamples
the same utterances for both sides, so what the two share cancels out of its interval."""

from __future__ import annotations

from typing import Optional, Sequence

RESAMPLES = 1000
LEVEL = 0.95


def utterance_counts(truth: str, hypothesis: str) -> dict:
    """Errors (substitutions + deletions + insertions) and reference length, in words and in
    characters, of one normalized hypothesis against its normalized truth."""
    import jiwer

    if not truth.strip():  # nothing to say: every word heard is an insertion
        return {"words": 0, "word_errors": len(hypothesis.split()), "chars": 0, "char_errors": len(hypothesis)}
    words = jiwer.process_words(truth, hypothesis or " ")
    chars = jiwer.process_characters(truth, hypothesis or " ")
    return {"words": words.hits + words.substitutions + words.deletions,
            "word_errors": words.substitutions + words.deletions + words.insertions,
            "chars": chars.hits + chars.substitutions + chars.deletions,
            "char_errors": chars.substitutions + chars.deletions + chars.insertions}


def rate(errors: Sequence[float], totals: Sequence[float]) -> Optional[float]:
    total = float(sum(totals))
    return float(sum(errors)) / total if total > 0 else None


def bootstrap_interval(errors: Sequence[float], totals: Sequence[float], seed: int = 0,
                       resamples: int = RESAMPLES, level: float = LEVEL,
                       minus: Optional[Sequence[float]] = None) -> Optional[list[float]]:
    """The percentile interval of the corpus rate sum(errors)/sum(totals) over utterance
    resamples; with `minus`, of the paired difference (sum(errors) - sum(minus)) / sum(totals).
    None when there is nothing to resample."""
    import numpy as np

    errors = np.asarray(errors, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    if errors.size == 0 or totals.sum() <= 0:
        return None
    if minus is not None:
        errors = errors - np.asarray(minus, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, errors.size, size=(resamples, errors.size))
    denominators = totals[picks].sum(axis=1)
    keep = denominators > 0
    rates = errors[picks].sum(axis=1)[keep] / denominators[keep]
    if rates.size == 0:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def with_interval(errors, totals, seed: int, minus=None) -> dict:
    point = rate(errors, totals) if minus is None else (
        (float(sum(errors)) - float(sum(minus))) / float(sum(totals)) if sum(totals) else None)
    return {"value": None if point is None else round(point, 6),
            "ci95": bootstrap_interval(errors, totals, seed, minus=minus)}


def truth_statistics(counts: list[dict], seed: int = 0) -> dict:
    """From per-utterance counts by side ({"device": utterance_counts} and, when there is a
    reference, {"reference": utterance_counts}): corpus WER and CER with intervals for each side
    against the truth, and, with both sides, the paired difference device - reference."""
    words = [c["device"]["words"] for c in counts]
    chars = [c["device"]["chars"] for c in counts]
    sides = [side for side in ("device", "reference") if counts and side in counts[0]]
    result = {}
    for side in sides:
        result[side] = {"wer": with_interval([c[side]["word_errors"] for c in counts], words, seed),
                        "cer": with_interval([c[side]["char_errors"] for c in counts], chars, seed)}
    if "reference" in sides:
        result["difference"] = {
            "wer": with_interval([c["device"]["word_errors"] for c in counts], words, seed,
                                 minus=[c["reference"]["word_errors"] for c in counts]),
            "cer": with_interval([c["device"]["char_errors"] for c in counts], chars, seed,
                                 minus=[c["reference"]["char_errors"] for c in counts]),
        }
    result["bootstrap"] = {"resamples": RESAMPLES, "level": LEVEL, "seed": seed, "unit": "utterance",
                           "method": "percentile"}
    return result
