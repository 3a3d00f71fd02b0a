"""Comparing transcripts: device vs reference (exact match, WER/CER, where they differ,
word-timestamp drift) and either against a ground truth after English normalization."""

from __future__ import annotations

import difflib
import statistics
from functools import lru_cache

NORMALIZER = "whisper_normalizer.english.EnglishTextNormalizer (Whisper's English normalizer, as used by the Open ASR leaderboard)"


def error_rates(reference: str, hypothesis: str) -> dict:
    """WER and CER of `hypothesis` against `reference` (jiwer; an empty pair is 0)."""
    import jiwer

    return {"wer": float(jiwer.wer(reference, hypothesis)), "cer": float(jiwer.cer(reference, hypothesis))}


def corpus_error_rates(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus-level WER/CER: errors summed over files, divided by the total reference length."""
    import jiwer

    if not references:
        return {"wer": None, "cer": None}
    return {"wer": float(jiwer.wer(references, hypotheses)), "cer": float(jiwer.cer(references, hypotheses))}


def word_differences(reference: str, hypothesis: str, limit: int = 3) -> list[dict]:
    """The first `limit` places where the words differ, side by side."""
    import jiwer

    if reference.split() == hypothesis.split():
        return []
    output = jiwer.process_words(reference or " ", hypothesis or " ")
    ref_words, hyp_words = output.references[0], output.hypotheses[0]
    diffs = []
    for chunk in output.alignments[0]:
        if chunk.type == "equal":
            continue
        diffs.append({
            "type": chunk.type,
            "position": chunk.ref_start_idx,
            "reference": " ".join(ref_words[chunk.ref_start_idx:chunk.ref_end_idx]),
            "device": " ".join(hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx]),
        })
        if len(diffs) == limit:
            break
    return diffs


def aligned_word_offsets(reference_words: list[dict], device_words: list[dict]) -> tuple[list, list]:
    """Absolute start and end differences (seconds) of the words that align between two transcripts."""
    matcher = difflib.SequenceMatcher(a=[w["word"] for w in reference_words],
                                      b=[w["word"] for w in device_words], autojunk=False)
    pairs = [(reference_words[block.a + k], device_words[block.b + k])
             for block in matcher.get_matching_blocks() for k in range(block.size)]
    return [abs(r["start"] - d["start"]) for r, d in pairs], [abs(r["end"] - d["end"]) for r, d in pairs]


def timestamp_drift(reference_words: list[dict], device_words: list[dict]) -> dict:
    return summarize_drift(*aligned_word_offsets(reference_words, device_words))


def summarize_drift(starts: list[float], ends: list[float]) -> dict:
    if not starts:
        return {"aligned_words": 0, "start_mean": None, "start_max": None, "end_mean": None, "end_max": None}
    return {
        "aligned_words": len(starts),
        "start_mean": round(statistics.fmean(starts), 4),
        "start_max": round(max(starts), 4),
        "end_mean": round(statistics.fmean(ends), 4),
        "end_max": round(max(ends), 4),
    }


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    """Lowercase, no punctuation, spelled-out numbers as digits, contractions expanded."""
    return " ".join(_english_normalizer()(text).split())
