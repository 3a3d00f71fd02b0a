"""The accuracy job: every input through the reference (fp32) and the target, compared file by
file, each finished comparison appended to the results stream beside --output as it exists.
An interrupted run keeps its comparisons and --resume skips them (both sides); reference
transcripts of an earlier run can be reused (`reference_results`) instead of recomputed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

from ..device.accelerators import DeviceChoice, device_name, prepare_device
from ..device.environment import collect_environment
from ..errors import InputError, SetupError
from ..inputs.sources import AudioInput, resolve_relative
from ..measure.accuracy import (
    AccuracyOptions,
    compare_file,
    failed_entry,
    summarize,
    summary_line,
    transcribe_side,
    warm_up,
)
from ..measure.compare import NORMALIZER
from ..model.loading import ModelPool, ModelSource, model_identity
from ..outputs.paths import check_output_file
from ..outputs.stream import open_stream, stream_path_for
from ..engine.transcriber import planning_duration
from ..ranks.world import World
from ..signals import raise_unless_per_file
from .pipeline import Pipeline
from .ranked import RankedRun


@dataclass(frozen=True)
class AccuracyRun:
    """Where the comparisons go and what an earlier run left."""

    output: Optional[str] = None  # the results JSON; its stream sits beside it
    resume: bool = False
    reference_results: Optional[str] = None  # reuse these reference transcripts
    reference_sides: Optional[dict] = None  # or these, by resolved path (reference_sides_of)
    command_line: str = ""
    truth_text: Optional[str] = None  # ground truth for a single input
    progress: bool = False
    say: Callable[[str], None] = lambda _: None


def load_reference_results(path: str) -> dict[str, dict]:
    """Reference sides by resolved audio path, from an accuracy_run.py results JSON (its
    reference side), an inference.py JSON/JSONL made with word timestamps on the reference, or a
    NeMo result manifest (`audio_filepath` + `pred_text` per line, as NeMo's transcribe_speech.py
    writes it on a GPU host; word timestamps used when it has them, drift left out otherwise)."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as error:
        raise SetupError(f"--reference-results {path}: not readable ({error})") from None
    documents = _json_documents(path, text)
    base = os.path.dirname(os.path.abspath(path))
    sides = {}
    for document in (d for d in documents if isinstance(d, dict)):
        for entry in _reference_entries(document, base):
            sides[os.path.realpath(entry["path"])] = entry["side"]
    if not sides:
        raise SetupError(f"--reference-results {path}: holds no reference transcripts (with word timestamps, or "
                         "a NeMo result manifest's pred_text)")
    return sides


def reference_sides_of(document: dict) -> dict[str, dict]:
    """The reference side of every compared file of an accuracy document, by resolved path: a
    second card compares against them instead of running the CPU reference again."""
    return {os.path.realpath(entry["path"]): entry["side"] for entry in _reference_entries(document, "")}


def _json_documents(path: str, text: str) -> list[dict]:
    """One JSON document, or JSON lines (NeMo manifests are JSON lines whatever their name)."""
    if not path.endswith(".jsonl"):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError:
            pass
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SetupError(f"--reference-results {path}:{number}: invalid JSON ({error.msg})") from None
    return documents


def _reference_entries(document: dict, base: str):
    if "pred_text" in document and isinstance(document.get("audio_filepath"), str):  # a NeMo result manifest line
        words = [w for w in document.get("word") or [] if isinstance(w, dict) and {"word", "start", "end"} <= set(w)] \
            if isinstance(document.get("word"), list) else []
        audio, _ = resolve_relative(os.path.expanduser(document["audio_filepath"]), base)
        yield {"path": audio, "side": {"text": str(document["pred_text"]), "words": words,
                                       "latency": None, "rtfx": None}}
        return
    if "accuracy" in document:  # accuracy_run.py results
        for f in document["accuracy"]["files"]:
            if not f.get("error") and "words" in f.get("reference", {}):
                yield {"path": f["path"], "side": f["reference"]}
        return
    for r in document.get("results", [document]):  # inference.py JSON, or one JSONL line
        words = (r.get("timestamps") or {}).get("word")
        if r.get("error") is None and r.get("text") is not None and words is not None:
            yield {"path": r["path"], "side": {"text": r["text"], "words": words, "latency": None, "rtfx": None}}


def accuracy_check(target: DeviceChoice, reference: DeviceChoice, target_source: ModelSource,
                   reference_source: ModelSource, pool: ModelPool, items: list[AudioInput],
                   options: AccuracyOptions, run: AccuracyRun = AccuracyRun(),
                   publish: Callable[[dict], None] = lambda document: None,
                   world: World = World()) -> Optional[dict]:
    """Prepare both devices, compare every input (durably), hand the results document to
    `publish`, then drop the stream if every input was compared. Under torchrun (`world` of
    several ranks) each rank compares its share on its own card against the CPU reference
    (each file's reference computed once, by the rank that owns it); rank 0 merges, adds a
    verdict per card, publishes and returns the document; the other ranks return None."""
    if run.output:
        check_output_file(run.output, [i.path for i in items if os.path.exists(i.path)])
    reused = run.reference_sides or (load_reference_results(run.reference_results) if run.reference_results else {})
    settings = prepare_device(target.device, exact_fp32=options.dtype == "fp32")
    prepare_device(reference.device, exact_fp32=True)
    fingerprint = {"model": model_identity(target_source), "reference_model": model_identity(reference_source),
                   "device": target.device, "reference": reference.device, "dtype": options.dtype,
                   "long_audio_seconds": options.long_audio_seconds,
                   # only when not torch, so that runs recorded before the option still resume
                   **({"encoder_runtime": options.encoder_runtime} if options.encoder_runtime != "torch" else {})}
    sides = _Sides(pool, target, reference, target_source, reference_source, options, reused)
    ranked = RankedRun(world, target.device, run.say)
    try:
        if world.ranked:
            stream = ranked.open(stream_path_for(run.output), fingerprint, run.resume)
        else:
            stream = open_stream(stream_path_for(run.output), fingerprint, run.resume)
        pipeline = Pipeline(items, stream, lambda entry, item: dict(entry, path=item.path), ranked.say,
                            run.command_line)
        share = ranked.my_share(pipeline, items, planning_duration)
        # the card a file ran on; CPU ranks (tests) share one device, so they are told apart by rank
        card = f"cpu/rank{world.rank}" if world.ranked and target.type == "cpu" else target.device
        files = _compare_all(items, sides, pipeline, share, run, options, card)
        if world.ranked:
            stream.close()
            mine = summarize([files[i] for i in share], options)
            summaries = ranked.gather({"card": card, "compared": mine["aggregate"]["compared"],
                                       "errors": mine["aggregate"]["errors"], "passed": mine["verdict"]["passed"]})
            if not world.is_main:
                return None
            files = ranked.merged(pipeline, items, lambda entry, item: dict(entry, path=item.path))
            stream = None
        result = summarize(files, options)
        if world.ranked:
            add_card_verdicts(result, files, options, {s["card"]: s["rank"] for s in summaries})
        document = _document(target, reference, target_source, reference_source, items, options, run, settings, result)
        if world.ranked:
            document["ranks"] = summaries
        if result["aggregate"]["compared"] == 0 and run.output and os.path.exists(run.output):
            run.say(f"note: no input could be compared; {run.output} was left as it was")
        else:
            publish(document)
        if stream:
            stream.finish(result["aggregate"]["errors"] == 0, run.say)
        elif world.ranked and result["aggregate"]["errors"] == 0:
            ranked.remove_streams()
        return document
    finally:
        ranked.close()


def add_card_verdicts(result: dict, files: list[dict], options: AccuracyOptions, ranks: dict) -> None:
    """`result["cards"]`: a verdict per card (the `card` each file was compared on; files an
    earlier run compared count for the card they ran on), so a card that disagrees with the CPU
    is named; one failing card fails the whole verdict, even if the set passes. `ranks`: card ->
    the rank that used it (torchrun), empty when one process checked the cards in turn."""
    cards = sorted({f.get("card", "?") for f in files}, key=lambda c: (ranks.get(c, len(ranks)), c))
    result["cards"] = []
    for card in cards:
        summary = summarize([f for f in files if f.get("card", "?") == card], options)
        result["cards"].append({"card": card, "rank": ranks.get(card), "aggregate": {k: summary["aggregate"][k] for k in (
            "files", "compared", "errors", "exact_matches", "match_rate", "wer", "cer")},
            "verdict": summary["verdict"], "summary": summary_line(summary)})
        if not summary["verdict"]["passed"]:
            where = f" (rank {ranks[card]})" if card in ranks else ""
            result["verdict"]["passed"] = False
            result["verdict"]["failures"].append(f"{card}{where} disagrees: " + "; ".join(summary["verdict"]["failures"]))


def cards_summary_line(result: dict) -> str:
    return summary_line(result) + _cards_line(result)


def _document(target, reference, target_source, reference_source, items, options, run, settings, result) -> dict:
    return {
        "environment": collect_environment([target.device, reference.device], run.command_line),
        "model": {"spec": target_source.spec, "kind": target_source.kind, "note": target_source.note},
        "reference_model": {"spec": reference_source.spec, "kind": reference_source.kind,
                            "reused_from": run.reference_results},
        "target": {"device": target.device, "name": device_name(target.device), "dtype": options.dtype,
                   "encoder_runtime": options.encoder_runtime,
                   "settings": settings, "reason": target.reason},
        "reference": {"device": reference.device, "name": device_name(reference.device), "dtype": "fp32"},
        "inputs": [item.path for item in items],
        "long_audio_seconds": options.long_audio_seconds,
        "normalizer": NORMALIZER,
        "accuracy": result,
        "summary": cards_summary_line(result),
    }


def _cards_line(result: dict) -> str:
    cards = result.get("cards")
    if not cards:
        return ""
    failing = [c["card"] for c in cards if not c["verdict"]["passed"]]
    return f"; cards: {len(cards) - len(failing)} of {len(cards)} agree" + (
        f", disagreeing: {', '.join(failing)}" if failing else "")


class _Sides:
    """The two sides of a comparison; each model is loaded only when first needed."""

    def __init__(self, pool, target, reference, target_source, reference_source, options, reused):
        self.pool, self.options, self.reused = pool, options, reused
        self.target_key, self.reference_key = (target_source, target.device), (reference_source, reference.device)
        self.warmed = False

    def warm(self, items: list[AudioInput]) -> None:
        if not self.warmed:
            reference = None if self.reused else self.pool.get(*self.reference_key)
            warm_up(self.pool.get(*self.target_key), reference, items, self.options)
            self.warmed = True

    def target(self, signal) -> dict:
        return transcribe_side(self.pool.get(*self.target_key), signal, self.options.target_side())

    def reference_for(self, item: AudioInput) -> Callable[[object], dict]:
        reused = self.reused.get(os.path.realpath(item.path))
        if reused is not None:
            return lambda _signal: reused
        if self.reused:
            raise InputError(f"{item.path}: not in --reference-results")
        return lambda signal: transcribe_side(self.pool.get(*self.reference_key), signal, self.options.side("fp32"))


def _compare_all(items: list[AudioInput], sides: _Sides, pipeline: Pipeline, share: list[int], run: AccuracyRun,
                 options: AccuracyOptions, card: str) -> list[dict]:
    """The inputs at `share` compared, one per batch, each kept in the stream as soon as it is
    done; each entry names the `card` it ran on."""
    from tqdm import tqdm

    def batches():
        for index in tqdm(share, unit="file", disable=not run.progress, leave=False):
            sides.warm(items)
            yield [(index, {**_compare_one(items[index], sides, run.truth_text, options), "card": card})]

    return pipeline.run(batches(), lambda entry: entry)


def _compare_one(item: AudioInput, sides: _Sides, truth_text: Optional[str], options: AccuracyOptions) -> dict:
    truth = item.text if item.text is not None else truth_text
    try:
        return compare_file(sides.target, sides.reference_for(item), item, truth)
    except Exception as error:
        raise_unless_per_file(error, options.debug)
        return failed_entry(item, error)
