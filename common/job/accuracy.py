"""The accuracy job: every input through the reference (fp32) and the target, compared file by
file and with the ground truth where there is one, or, with no reference, through the target
alone against the truth (one pass). Each finished comparison is appended to the results stream
beside --output as it exists: an interrupted run keeps its comparisons and --resume skips them;
reference transcripts of an earlier run can be reused (`reference_results`) instead of
recomputed. `run_accuracy` is the whole job from its request: accuracy_run.py and
common.api.check_accuracy both run it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Callable, Optional

from ..choices import DEFAULT_LOADER, MAX_WER, MIN_MATCH
from ..device.accelerators import DeviceChoice, device_name, prepare_device, resolve_device
from ..device.environment import collect_environment
from ..engine.precision import check_dtype_for_device, check_encoder_runtime
from ..errors import InputError, SetupError
from ..files import write_json_atomic, write_text_atomic
from ..inputs.sources import AudioInput, InputOptions, collect_inputs, resolve_relative
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
from ..model.loading import ModelPool, ModelSource, default_model_spec, describe, model_identity, resolve_model_source
from ..outputs.paths import check_output_file
from ..outputs.stream import open_stream, stream_path_for
from ..engine.transcriber import planning_duration
from ..ranks.world import World
from ..signals import raise_unless_per_file
from .pipeline import Pipeline
from .ranked import RankedRun


@dataclass(frozen=True)
class AccuracyRequest:
    """A whole accuracy run as plain values: what accuracy_run.py's options and
    common.api.check_accuracy's arguments say."""

    audio: tuple[str, ...]  # files, folders, manifests, test sets
    model: Optional[str] = None  # None: the default model
    device: str = "auto"
    reference: Optional[str] = "cpu"  # the reference device; None: no reference, the device against the truth
    reference_model: Optional[str] = None  # None: the same as `model`
    reference_results: Optional[str] = None  # reuse these reference transcripts instead of computing them
    truth_text: Optional[str] = None  # ground truth for a single input
    inputs: InputOptions = InputOptions()
    options: AccuracyOptions = AccuracyOptions()
    loader: str = DEFAULT_LOADER
    quiet: bool = True  # hide NeMo's logs while loading
    output: Optional[str] = None  # the results JSON (published atomically), its stream beside it
    html: Optional[str] = None  # the HTML report
    resume: bool = False
    command_line: str = ""

    def check(self) -> None:
        """Settings that contradict each other, before anything is read."""
        if self.reference is None:
            if (self.options.min_match, self.options.max_wer) != (MIN_MATCH, MAX_WER):
                raise SetupError("--min-match/--max-wer: judge device vs reference; with --reference none the "
                                 "device is judged against the truth: use --max-truth-wer")
            for option, value in (("--reference-results", self.reference_results),
                                  ("--reference-model", self.reference_model)):
                if value is not None:
                    raise SetupError(f"{option}: needs a reference; --reference none compares the device with the "
                                     "truth only")


def _resolve(spec: str, target: bool) -> DeviceChoice:
    return resolve_device(spec)


def run_accuracy(request: AccuracyRequest, select_device: Callable[[str, bool], DeviceChoice] = _resolve,
                 world: World = World(), say: Callable[[str], None] = lambda _: None, progress: bool = False,
                 announce: bool = False) -> Optional[dict]:
    """The accuracy run of `request`, end to end: inputs collected and checked (outputs, truth)
    before any model loads, the devices chosen (`select_device(spec, is_target)`: a script's
    announces the device and sets the threads), every input compared durably, the document
    published to `request.output` and `request.html`. Returns the document; None on a torchrun
    rank other than 0 (rank 0 reports for every card)."""
    request.check()
    items = collect_inputs(list(request.audio), request.inputs)
    if request.html:  # --output is checked by accuracy_check, which the smoke chain runs too
        check_output_file(request.html, [i.path for i in items if os.path.exists(i.path)], "--html")
    _check_truth(request, items)
    target_source = resolve_model_source(request.model or default_model_spec())
    reference_source = resolve_model_source(request.reference_model) if request.reference_model else target_source
    target = select_device(request.device, True)
    check_dtype_for_device(request.options.dtype, target.device)
    check_encoder_runtime(request.options.encoder_runtime, target.device, request.options.dtype)
    reference = select_device(request.reference, False) if request.reference is not None else None
    if target_source.note and announce:
        say(f"model: {describe(target_source)}")
    pool = ModelPool(timestamps=True, quiet=request.quiet, loader=request.loader)
    run = AccuracyRun(output=request.output, resume=request.resume, reference_results=request.reference_results,
                      command_line=request.command_line, truth_text=request.truth_text, progress=progress, say=say)
    publish = (lambda document: write_json_atomic(request.output, document)) if request.output else \
        (lambda document: None)
    document = accuracy_check(target, reference, target_source, reference_source, pool, items, request.options, run,
                              publish, world)
    if document is not None and request.html:
        from ..report.html import accuracy_html

        write_text_atomic(request.html, accuracy_html(document))
    return document


def _check_truth(request: AccuracyRequest, items: list[AudioInput]) -> None:
    if request.truth_text is not None and len(items) != 1:
        raise SetupError(f"--truth-text: applies to one input, got {len(items)}; use a manifest with 'text'")
    if request.truth_text is None and all(i.text is None for i in items):
        needs = ("--reference none" if request.reference is None else
                 "--max-truth-wer" if request.options.max_truth_wer is not None else None)
        if needs:
            raise SetupError(f"{needs}: no input has a ground truth to compare with; give a manifest or dataset "
                             "with 'text', a LibriSpeech or Kaldi folder (transcripts), or --truth-text")


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


def accuracy_check(target: DeviceChoice, reference: Optional[DeviceChoice], target_source: ModelSource,
                   reference_source: ModelSource, pool: ModelPool, items: list[AudioInput],
                   options: AccuracyOptions, run: AccuracyRun = AccuracyRun(),
                   publish: Callable[[dict], None] = lambda document: None,
                   world: World = World()) -> Optional[dict]:
    """Prepare the devices, compare every input (durably), hand the results document to
    `publish`, then drop the stream if every input was compared. No `reference`: the target
    alone, against the truth (the model loaded and run once). Under torchrun (`world` of
    several ranks) each rank compares its share on its own card against the CPU reference
    (each file's reference computed once, by the rank that owns it); rank 0 merges, adds a
    verdict per card, publishes and returns the document; the other ranks return None."""
    if run.output:
        check_output_file(run.output, [i.path for i in items if os.path.exists(i.path)])
    options = replace(options, with_reference=reference is not None)
    reused = run.reference_sides or (load_reference_results(run.reference_results) if run.reference_results else {})
    settings = prepare_device(target.device, exact_fp32=options.dtype == "fp32")
    if reference is not None:
        prepare_device(reference.device, exact_fp32=True)
    fingerprint = {"model": model_identity(target_source),
                   "reference_model": model_identity(reference_source) if reference else None,
                   "device": target.device, "reference": reference.device if reference else None,
                   "dtype": options.dtype, "engine": options.target_side().engine,
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
        aggregate = summary["aggregate"]
        result["cards"].append({"card": card, "rank": ranks.get(card), "aggregate": {k: aggregate[k] for k in (
            "files", "compared", "errors", "exact_matches", "match_rate", "wer", "cer") if k in aggregate},
            "headline": summary["headline"], "verdict": summary["verdict"], "summary": summary_line(summary)})
        if not summary["verdict"]["passed"]:
            where = f" (rank {ranks[card]})" if card in ranks else ""
            result["verdict"]["passed"] = False
            result["verdict"]["failures"].append(f"{card}{where} fails: " + "; ".join(summary["verdict"]["failures"]))


def cards_summary_line(result: dict) -> str:
    return summary_line(result) + _cards_line(result)


def _document(target, reference, target_source, reference_source, items, options, run, settings, result) -> dict:
    """The results document; with no reference, its `reference` and `reference_model` are null."""
    return {
        "environment": collect_environment([target.device] + ([reference.device] if reference else []),
                                           run.command_line),
        "model": {"spec": target_source.spec, "kind": target_source.kind, "note": target_source.note},
        "reference_model": {"spec": reference_source.spec, "kind": reference_source.kind,
                            "reused_from": run.reference_results} if reference else None,
        "target": {"device": target.device, "name": device_name(target.device), "dtype": options.dtype,
                   "engine": options.target_side().engine, "encoder_runtime": options.encoder_runtime,
                   "settings": settings, "reason": target.reason},
        "reference": {"device": reference.device, "name": device_name(reference.device), "dtype": "fp32"}
        if reference else None,
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
    agree, disagreeing = ("agree", "disagreeing") if "match_rate" in result["aggregate"] else ("pass", "failing")
    return f"; cards: {len(cards) - len(failing)} of {len(cards)} {agree}" + (
        f", {disagreeing}: {', '.join(failing)}" if failing else "")


class _Sides:
    """The sides of a comparison (the target, and the reference unless there is none); each
    model is loaded only when first needed."""

    def __init__(self, pool, target, reference, target_source, reference_source, options, reused):
        self.pool, self.options, self.reused = pool, options, reused
        self.target_key = (target_source, target.device)
        self.reference_key = (reference_source, reference.device) if reference else None
        self.warmed = False

    def warm(self, items: list[AudioInput]) -> None:
        if not self.warmed:
            computed = self.reference_key and not self.reused
            warm_up(self.pool.get(*self.target_key), self.pool.get(*self.reference_key) if computed else None, items,
                    self.options)
            self.warmed = True

    def target(self, signal) -> dict:
        return transcribe_side(self.pool.get(*self.target_key), signal, self.options.target_side())

    def reference_for(self, item: AudioInput) -> Optional[Callable[[object], dict]]:
        if self.reference_key is None:
            return None
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
