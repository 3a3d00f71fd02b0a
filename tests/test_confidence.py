"""The bootstrap intervals of common/measure/confidence.py: they contain the point estimate,
narrow with more utterances, repeat exactly with the seed, and agree with jiwer's corpus WER."""

from __future__ import annotations

import numpy as np

from common.measure.confidence import bootstrap_interval, truth_statistics, utterance_counts, with_interval


def _corpus(n: int, seed: int = 1):
    """n utterances of 5-25 words with about 10% word errors, varying per utterance."""
    rng = np.random.default_rng(seed)
    words = rng.integers(5, 26, size=n)
    errors = rng.binomial(words, rng.uniform(0.0, 0.2, size=n))
    return errors.tolist(), words.tolist()


def test_the_interval_contains_the_point_estimate():
    for n in (10, 50, 400):
        errors, words = _corpus(n, seed=n)
        estimate = with_interval(errors, words, seed=0)
        low, high = estimate["ci95"]
        assert low <= estimate["value"] <= high
        assert low < high


def test_the_interval_narrows_with_more_utterances():
    widths = []
    for n in (20, 200, 2000):
        errors, words = _corpus(n)
        low, high = bootstrap_interval(errors, words, seed=0)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 5  # about 1/sqrt(100) = 1/10 of the width


def test_the_interval_is_reproducible_with_the_seed():
    errors, words = _corpus(100)
    assert bootstrap_interval(errors, words, seed=7) == bootstrap_interval(errors, words, seed=7)
    assert bootstrap_interval(errors, words, seed=7) != bootstrap_interval(errors, words, seed=8)


def test_the_paired_difference_cancels_what_both_sides_share():
    truths = ["the cat sat on the mat", "a quick brown fox", "one two three four", "hello there world"]
    device = ["the cat sat on a mat", "a quick brown fox", "one two tree four", "hello world"]
    same = [{"device": utterance_counts(t, d), "reference": utterance_counts(t, d)} for t, d in zip(truths, device)]
    stats = truth_statistics(same, seed=0)
    assert stats["difference"]["wer"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    better = [{"device": utterance_counts(t, t), "reference": utterance_counts(t, d)} for t, d in zip(truths, device)]
    stats = truth_statistics(better, seed=0)
    diff = stats["difference"]["wer"]
    assert diff["value"] < 0 and diff["ci95"][0] <= diff["value"] <= diff["ci95"][1] <= 0
    assert stats["bootstrap"]["seed"] == 0 and stats["bootstrap"]["unit"] == "utterance"


def test_counts_add_up_to_jiwers_corpus_rates():
    import jiwer

    truths = ["the cat sat on the mat", "a quick brown fox jumps", "one two three four", "x"]
    hyps = ["the cat sat on a hat", "a quick brown fox jumps over", "one three four", "y z"]
    counts = [utterance_counts(t, h) for t, h in zip(truths, hyps)]
    wer = sum(c["word_errors"] for c in counts) / sum(c["words"] for c in counts)
    cer = sum(c["char_errors"] for c in counts) / sum(c["chars"] for c in counts)
    assert abs(wer - jiwer.wer(truths, hyps)) < 1e-12
    assert abs(cer - jiwer.cer(truths, hyps)) < 1e-12
    assert utterance_counts("", "extra words") == {"words": 0, "word_errors": 2, "chars": 0, "char_errors": 11}
