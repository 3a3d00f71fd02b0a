#!/usr/bin/env python3
"""The toolkit against its CPU peers, onnx-asr and sherpa-onnx, on the same model, audio and threads.

The peers run the model as NeMo's own export writes it: for onnx-asr `model.export()`
(encoder-model.onnx, decoder_joint-model.onnx) with vocab.txt and config.json; for sherpa-onnx
`encoder/decoder/joint.export()` with tokens.txt and the metadata its NeMo transducer loader reads
(as its scripts/nemo/parakeet-tdt-0.6b-v2/export_onnx.py writes them). int8 variants come from
onnxruntime's quantize_dynamic: QInt8 weights for onnx-asr, sherpa-onnx's own recipe (QUInt8
encoder, QInt8 decoder and joiner) for sherpa-onnx. Exports are cached under --export-dir, one
folder per model file (path, size, mtime), published by a rename and reused by later runs.

What is timed (wall clock, time.perf_counter, every contender on --threads threads):
  clip   one clip at batch 1: its float32 16 kHz samples, already in memory, in; the text out.
         toolkit: Model.transcribe(array); onnx-asr: recognize(array); sherpa-onnx:
         create_stream, accept_waveform, decode_stream, result.text.
  set    every clip of the set once: the list of arrays in, the list of texts out. toolkit:
         Model.transcribe(list) with its default planned batches; onnx-asr: recognize(list) (its
         own batch); sherpa-onnx: one stream per clip, all decoded by one decode_streams call.
Not timed: reading and resampling the audio (once, up front), imports, model loading, export and
quantization, session creation. Rounds are interleaved: every round runs each contender once, in
an order rotated by one place per round; --warmup rounds first, then --runs timed rounds, of
which the median is reported. With --isolate each of those calls runs in a child process that
loads the contender and makes one untimed call first (one model in memory at a time).
Transcripts: each contender's texts against the toolkit fp32 texts (whitespace collapsed, then
compared as strings), and their WER (jiwer) against them.
Ratios are speeds (x > 1: faster): against the fastest peer of the same precision class
(fp32, or reduced = bf16/fp16/int8) and against the toolkit at fp32.

  python bench/make_clips.py --out bench/clips
  python bench/peers_bench.py --model random:parakeet --runs 5 --set bench/clips/manifest.jsonl
  python bench/peers_bench.py --smoke     # demo model, 1 warm-up, 1 run: a minute
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from common.device.threads import physical_cores  # noqa: E402
from common.files import write_json_atomic  # noqa: E402

EXPORT_VERSION = 1  # bump when the exported layout changes: older cached exports are then ignored
PEERS = ("onnx-asr", "sherpa-onnx")
PEER_DTYPES = ("fp32", "int8")
SAMPLE_RATE = 16000
LARGE_ONNX_BYTES = 1_500_000_000  # above this, weights go to one external data file (protobuf's limit is 2 GB)


# --------------------------------------------------------------------------------------------
# Exports


def model_file(spec: str) -> tuple[object, Path]:
    """(source, the file whose identity keys the export: the .nemo, or an extracted folder's weights)."""
    from common.model.loading import resolve_model_source
    from common.model.nemo_archive import WEIGHTS_NAME
    from common.model.random_models import cached_random_model

    source = resolve_model_source(spec)
    if source.kind == "random":
        return source, Path(cached_random_model(spec))
    if source.kind == "nemo_file":
        return source, Path(source.path)
    if source.kind == "extracted_dir":
        return source, Path(source.path) / WEIGHTS_NAME
    raise SystemExit(f"--model {spec}: the peers need a local model (a .nemo, an extracted folder, demo or "
                     f"random:<size>), not {source.kind}")


def export_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"{path.stem}-{digest}-{stat.st_size}-{stat.st_mtime_ns}-peers{EXPORT_VERSION}"


def default_export_dir() -> Path:
    from common.model.random_models import default_cache_dir

    return default_cache_dir() / "peers"


def ensure_exports(spec: str, root: Path) -> dict:
    """The cached export folder for `spec` (exported now if missing) and what it holds."""
    from filelock import FileLock

    _, path = model_file(spec)
    key = export_key(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".locks").mkdir(exist_ok=True)
    folder = root / key
    start = time.perf_counter()
    with FileLock(str(root / ".locks" / f"{key}.lock")):
        reused = (folder / "manifest.json").is_file()
        if not reused:
            for leftover in root.glob(f".{key}.partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.partial-"))
            try:
                _export_in_child(spec, partial)
                os.rename(partial, folder)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return {"folder": str(folder), "reused": reused, "seconds": round(time.perf_counter() - start, 1), **manifest}


def _export_in_child(spec: str, out: Path) -> None:
    """Export in a fresh process: NeMo's export() rewrites modules for tracing, and quantizing a
    2.4 GB encoder peaks at several GB; neither should stay in the benchmarking process."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=export_all, args=(spec, str(out)))
    child.start()
    child.join()
    if child.exitcode != 0 or not (out / "manifest.json").is_file():
        raise SystemExit(f"peers_bench: exporting {spec} failed (exit code {child.exitcode}); see the output above")


def export_all(spec: str, out: str) -> None:
    """Both peers' layouts, fp32 and int8, into `out`; manifest.json last (it marks completeness)."""
    import onnx
    import onnxruntime
    import torch

    from common.model.loading import restore_on_cpu

    out = Path(out)
    source, path = model_file(spec)
    model, _ = restore_on_cpu(source)
    model.eval()
    facts = model_facts(model)
    scratch = out / ".scratch"
    started = time.perf_counter()
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic warns once per tensor it leaves alone
    with torch.no_grad():
        for export, peer in ((export_onnx_asr, "onnx-asr"), (export_sherpa, "sherpa-onnx")):
            print(f"peers_bench: exporting for {peer} ...", file=sys.stderr)
            export(model, facts, out / peer, scratch / peer, spec)
            shutil.rmtree(scratch / peer)  # the exporter's copy, a file per tensor for a large encoder
    shutil.rmtree(scratch)
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"model": spec, "model_file": str(path), "export_seconds": round(time.perf_counter() - started, 1),
                "facts": facts, "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                                             "onnxruntime": onnxruntime.__version__},
                "int8_weights": {"onnx-asr": "QInt8 (encoder and decoder_joint)",
                                 "sherpa-onnx": "QUInt8 encoder, QInt8 decoder and joiner (sherpa-onnx's recipe)"},
                "files": files}
    write_json_atomic(out / "manifest.json", manifest)


def model_facts(model) -> dict:
    cfg = model.cfg
    durations = list(cfg.decoding.get("durations", []) or [])
    if cfg.decoding.get("model_type") != "tdt" or durations != list(range(len(durations))):
        # both peers take the index of the best duration logit as the number of frames to skip
        raise SystemExit(f"peers_bench: the peers decode TDT models with durations 0..N-1; this model has "
                         f"model_type={cfg.decoding.get('model_type')} durations={durations}")
    return {"n_mels": int(cfg.preprocessor.features), "subsampling_factor": int(cfg.encoder.subsampling_factor),
            "vocab_size": int(model.decoder.vocab_size), "durations": durations,
            "max_symbols": int(cfg.decoding.get("greedy", {}).get("max_symbols", 10) or 10),
            "normalize": str(cfg.preprocessor.normalize), "pred_rnn_layers": int(model.decoder.pred_rnn_layers),
            "pred_hidden": int(model.decoder.pred_hidden)}


def save_onnx(src: Path, dst: Path, metadata: Optional[dict] = None, location: Optional[str] = None) -> None:
    """Copy an exported ONNX model to `dst`, setting `metadata`; weights past LARGE_ONNX_BYTES go
    to one file beside it (`location`, default `dst`.data) instead of the exporter's file per tensor."""
    import onnx

    model = onnx.load(str(src))  # loads external data too
    if metadata is not None:
        del model.metadata_props[:]
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if size > LARGE_ONNX_BYTES:
        onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=location or dst.name + ".data", size_threshold=1024)
    else:
        onnx.save(model, str(dst))


def quantize(src: Path, dst: Path, weight_type: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_input=str(src), model_output=str(dst), weight_type=getattr(QuantType, weight_type))


def export_onnx_asr(model, facts: dict, folder: Path, scratch: Path, spec: str) -> None:
    """onnx-asr's "nemo-conformer-tdt" layout (its docs/conversion.md; file names as its
    NemoConformerRnnt._get_model_files)."""
    scratch.mkdir(parents=True, exist_ok=True)
    model.export(str(scratch / "model.onnx"))  # writes encoder-model.onnx and decoder_joint-model.onnx
    for name in ("encoder-model", "decoder_joint-model"):
        save_onnx(scratch / f"{name}.onnx", folder / f"{name}.onnx")
        quantize(folder / f"{name}.onnx", folder / f"{name}.int8.onnx", "QInt8")
    tokens = list(model.tokenizer.vocab)
    assert len(tokens) == facts["vocab_size"], (len(tokens), facts["vocab_size"])
    with open(folder / "vocab.txt", "w", encoding="utf-8") as handle:  # "<token> <id>", the blank last
        handle.writelines(f"{token} {i}\n" for i, token in enumerate([*tokens, "<blk>"]))
    config = {"model_type": "nemo-conformer-tdt", "features_size": facts["n_mels"],
              "subsampling_factor": facts["subsampling_factor"], "max_tokens_per_step": facts["max_symbols"]}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def export_sherpa(model, facts: dict, folder: Path, scratch: Path, spec: str) -> None:
    """sherpa-onnx's NeMo transducer layout. Its loader (offline-transducer-nemo-model.cc) reads
    vocab_size (blank excluded), subsampling_factor, normalize_type, pred_rnn_layers, pred_hidden
    and feat_dim from the encoder's metadata, and treats the model as TDT when "url" contains "tdt"."""
    scratch.mkdir(parents=True, exist_ok=True)
    model.encoder.export(str(scratch / "encoder.onnx"))
    model.decoder.export(str(scratch / "decoder.onnx"))
    model.joint.export(str(scratch / "joiner.onnx"))
    metadata = {"vocab_size": facts["vocab_size"],
                "normalize_type": "" if facts["normalize"] == "NA" else facts["normalize"],
                "pred_rnn_layers": facts["pred_rnn_layers"], "pred_hidden": facts["pred_hidden"],
                "subsampling_factor": facts["subsampling_factor"], "model_type": "EncDecRNNTBPEModel",
                "version": "2", "model_author": "NeMo", "feat_dim": facts["n_mels"],
                "url": f"local export of {spec} (nemo tdt)",
                "comment": "Only the transducer branch is exported (bench/peers_bench.py)"}
    save_onnx(scratch / "encoder.onnx", folder / "encoder.onnx", metadata, location="encoder.weights")
    quantize(folder / "encoder.onnx", folder / "encoder.int8.onnx", "QUInt8")
    save_onnx(folder / "encoder.int8.onnx", folder / "encoder.int8.onnx", metadata)
    for name in ("decoder", "joiner"):
        save_onnx(scratch / f"{name}.onnx", folder / f"{name}.onnx")
        quantize(folder / f"{name}.onnx", folder / f"{name}.int8.onnx", "QInt8")
    tokens = list(model.joint.vocabulary)
    assert len(tokens) == facts["vocab_size"], (len(tokens), facts["vocab_size"])
    with open(folder / "tokens.txt", "w", encoding="utf-8") as handle:
        handle.writelines(f"{token} {i}\n" for i, token in enumerate([*tokens, "<blk>"]))


# --------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    name: str
    family: str  # toolkit | onnx-asr | sherpa-onnx
    dtype: str
    clip: Callable  # array -> text
    set: Callable  # list of arrays -> list of texts
    load_seconds: float
    notes: dict = field(default_factory=dict)
    loaded: object = None  # the toolkit's model, which its other variants share

    @property
    def precision_class(self) -> str:
        return precision_class(self.dtype)


def precision_class(dtype: str) -> str:
    return "fp32" if dtype == "fp32" else "reduced"


ONNX_RUNTIME_SUFFIX = "+onnxruntime"  # a toolkit dtype with its encoder in ONNX Runtime: fp32+onnxruntime


def toolkit_dtypes(option: Optional[str]) -> list[str]:
    """--toolkit-dtypes, or every dtype of common.engine.precision.DTYPES the CPU runs, and fp32
    with the encoder in ONNX Runtime (--encoder-runtime onnxruntime) where it is installed."""
    from common.engine import precision

    if option:
        return [d.strip() for d in option.split(",") if d.strip()]
    usable = []
    for dtype in precision.DTYPES:
        try:
            precision.check_dtype_for_device(dtype, "cpu")
        except Exception:
            continue
        usable.append(dtype)
    try:
        precision.check_encoder_runtime("onnxruntime", "cpu", "fp32")
        usable.insert(1, "fp32" + ONNX_RUNTIME_SUFFIX)
    except Exception:
        pass
    return usable


def load_toolkit(spec: str, variant: str, loaded: Optional[object] = None) -> Contender:
    """`variant`: a dtype, or fp32+onnxruntime. `loaded`: another variant's model, shared (one
    fp32 model in memory, each variant adding only its encoder copy), whose load is not counted."""
    import numpy as np

    from common.api import Model, load_model
    from common.engine.precision import check_dtype_for_device, check_encoder_runtime

    on_onnxruntime = variant.endswith(ONNX_RUNTIME_SUFFIX)
    dtype = variant[:-len(ONNX_RUNTIME_SUFFIX)] if on_onnxruntime else variant
    runtime = "onnxruntime" if on_onnxruntime else "torch"
    start = time.perf_counter()
    if loaded is None:
        model = load_model(spec, device="cpu", dtype=dtype, encoder_runtime=runtime)
    else:
        check_dtype_for_device(dtype, "cpu")
        check_encoder_runtime(runtime, "cpu", dtype)
        model = Model(loaded, dtype, runtime)
    model.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))  # untimed: the export or its session, once
    seconds = time.perf_counter() - start

    def texts(records) -> list[str]:
        bad = [r.error for r in records if getattr(r, "error", None)]
        if bad:
            raise RuntimeError(f"toolkit {dtype}: {bad[0]}")
        return [r.text for r in records]

    call = f"common.api.load_model(model, device='cpu', dtype={dtype!r}" + \
        (f", encoder_runtime={runtime!r}" if runtime != "torch" else "") + ").transcribe()"
    return Contender(f"toolkit {variant}", "toolkit", dtype, clip=lambda signal: texts([model.transcribe(signal)])[0],
                     set=lambda signals: texts(model.transcribe(signals)), load_seconds=seconds,
                     notes={"call": call, "model_shared": loaded is not None}, loaded=model.loaded)


def load_onnx_asr(folder: Path, dtype: str, threads: int, facts: dict, arena: bool = False) -> Contender:
    import onnx_asr
    import onnxruntime

    if facts["n_mels"] not in (80, 128):
        raise RuntimeError(f"onnx-asr has NeMo preprocessors for 80 and 128 mel features only, not {facts['n_mels']}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ONNX Runtime's CPU arena keeps each session's peak: at the full size, four peer sessions
    # holding a 16-clip batch's peak beside the toolkit went past 24 GiB (killed for memory).
    options.enable_cpu_mem_arena = arena
    start = time.perf_counter()
    model = onnx_asr.load_model("nemo-conformer-tdt", path=str(folder), quantization=None if dtype == "fp32" else dtype,
                                sess_options=options, providers=["CPUExecutionProvider"])
    seconds = time.perf_counter() - start
    return Contender(f"onnx-asr {dtype}", "onnx-asr", dtype,
                     clip=lambda signal: model.recognize(signal, sample_rate=SAMPLE_RATE),
                     set=lambda signals: list(model.recognize(signals, sample_rate=SAMPLE_RATE)), load_seconds=seconds,
                     notes={"preprocessor": f"nemo{facts['n_mels']}", "intra_op_num_threads": threads,
                            "enable_cpu_mem_arena": arena})


def load_sherpa(folder: Path, dtype: str, threads: int, facts: dict) -> Contender:
    import sherpa_onnx

    suffix = "" if dtype == "fp32" else f".{dtype}"
    start = time.perf_counter()
    recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
        encoder=str(folder / f"encoder{suffix}.onnx"), decoder=str(folder / f"decoder{suffix}.onnx"),
        joiner=str(folder / f"joiner{suffix}.onnx"), tokens=str(folder / "tokens.txt"), num_threads=threads,
        sample_rate=SAMPLE_RATE, feature_dim=facts["n_mels"], decoding_method="greedy_search",
        model_type="nemo_transducer", provider="cpu")
    seconds = time.perf_counter() - start

    def clip(signal) -> str:
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, signal)
        recognizer.decode_stream(stream)
        return stream.result.text

    def many(signals) -> list[str]:
        streams = []
        for signal in signals:
            stream = recognizer.create_stream()
            stream.accept_waveform(SAMPLE_RATE, signal)
            streams.append(stream)
        recognizer.decode_streams(streams)
        return [stream.result.text for stream in streams]

    return Contender(f"sherpa-onnx {dtype}", "sherpa-onnx", dtype, clip=clip, set=many, load_seconds=seconds,
                     notes={"num_threads": threads, "decoding_method": "greedy_search"})


# --------------------------------------------------------------------------------------------
# Timing and comparison


def normalized(text: str) -> str:
    return " ".join(text.split())


class ChildFailed(Exception):
    """--isolate: a child process reported an error (its message is the child's)."""


def interleaved(contenders: list[Contender], warmup: int, runs: int, call) -> dict:
    """{name: {"times": [...], "texts": [[...] per timed round], "error": str|None, ...}}: round-robin,
    the order rotated by one place per round. `call(contender)` -> (seconds, texts, extras), each
    of `extras` kept per timed round too."""
    results = {c.name: {"times": [], "texts": [], "error": None} for c in contenders}
    for number in range(warmup + runs):
        shift = number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            result = results[contender.name]
            if result["error"]:
                continue
            try:
                seconds, texts, extras = call(contender)
            except Exception as error:  # one broken contender does not stop the others
                result["error"] = str(error) if isinstance(error, ChildFailed) else f"{type(error).__name__}: {error}"
                print(f"peers_bench: {contender.name} failed: {result['error']}", file=sys.stderr)
                continue
            if number >= warmup:
                result["times"].append(seconds)
                result["texts"].append(texts)
                for key, value in extras.items():
                    result.setdefault(key, []).append(value)
    return results


def in_this_process(workload: str, payload):
    """The timed call of `interleaved`: the contender's clip or set call, here."""
    def call(contender: Contender):
        run = contender.clip if workload == "clip" else contender.set
        gc.collect()
        start = time.perf_counter()
        out = run(payload)
        seconds = time.perf_counter() - start
        return seconds, [out] if workload == "clip" else list(out), {}
    return call


def word_errors(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(edit operations, reference words) summed over pairs; an empty reference counts every
    hypothesis word as an insertion."""
    import jiwer

    errors = words = 0
    for ref, hyp in zip(reference, hypothesis):
        ref, hyp = normalized(ref), normalized(hyp)
        if not ref:
            errors += len(hyp.split())
            continue
        out = jiwer.process_words(ref, hyp)
        errors += out.substitutions + out.deletions + out.insertions
        words += len(ref.split())
    return errors, words


def workload_rows(contenders: list[Contender], results: dict, audio_seconds: float, reference_name: str) -> list[dict]:
    reference = results.get(reference_name, {}).get("texts")
    reference = reference[-1] if reference else None
    rows = []
    for contender in contenders:
        result = results[contender.name]
        row = {"contender": contender.name, "family": contender.family, "dtype": contender.dtype,
               "precision_class": contender.precision_class}
        if result["error"] or not result["times"]:
            row["error"] = result["error"] or "no timed run"
            rows.append(row)
            continue
        median = statistics.median(result["times"])
        texts = result["texts"][-1]
        row.update({"median_s": round(median, 4), "times_s": [round(t, 4) for t in result["times"]],
                    "rtfx": round(audio_seconds / median, 2), "texts": texts,
                    "texts_same_every_run": all(t == texts for t in result["texts"])})
        if result.get("child_pids"):
            row["child_pids"] = result["child_pids"]
        if reference is not None:
            equal = sum(normalized(a) == normalized(b) for a, b in zip(texts, reference))
            errors, words = word_errors(reference, texts)
            row.update({"equal_to_toolkit_fp32": equal, "different_from_toolkit_fp32": len(texts) - equal,
                        "compared": len(texts), "wer_vs_toolkit_fp32": round(errors / max(words, 1), 4),
                        "word_errors_vs_toolkit_fp32": errors, "reference_words": words})
        rows.append(row)
    timed = {r["contender"]: r for r in rows if "median_s" in r}
    base = timed.get(reference_name)
    for row in rows:
        if "median_s" not in row:
            continue
        peers = [r for r in timed.values()
                 if r["family"] != "toolkit" and r["precision_class"] == row["precision_class"]]
        if peers:
            best = min(peers, key=lambda r: r["median_s"])
            row["fastest_peer_same_class"] = best["contender"]
            row["speed_vs_fastest_peer_same_class"] = round(best["median_s"] / row["median_s"], 2)
        if base:
            row["speed_vs_toolkit_fp32"] = round(base["median_s"] / row["median_s"], 2)
    return rows


def transcript_summary(result: dict) -> dict:
    """Per contender, clip and set together: texts equal to the reference's, and the WER against them."""
    summary = {}
    for part in ("clip", "set"):
        for row in result.get(part, {}).get("rows", []):
            if "compared" not in row:
                continue
            entry = summary.setdefault(row["contender"], {"equal": 0, "compared": 0, "word_errors": 0, "words": 0})
            entry["equal"] += row["equal_to_toolkit_fp32"]
            entry["compared"] += row["compared"]
            entry["word_errors"] += row["word_errors_vs_toolkit_fp32"]
            entry["words"] += row["reference_words"]
    for entry in summary.values():
        entry["wer"] = round(entry["word_errors"] / max(entry["words"], 1), 4)
    return summary


def ratio_table(clip_rows: list[dict], set_rows: Optional[list[dict]]) -> str:
    from tabulate import tabulate

    def cells(row: Optional[dict]) -> list:
        if row is None:
            return ["-"] * 4
        if "median_s" not in row:
            return ["failed", "", "", ""]
        return [f"{row['median_s']:.3f}", f"{row['rtfx']:.1f}", f"{row.get('speed_vs_fastest_peer_same_class', '-')}",
                f"{row.get('speed_vs_toolkit_fp32', '-')}"]

    by_set = {r["contender"]: r for r in set_rows or []}
    table = []
    for row in clip_rows:
        other = by_set.get(row["contender"])
        equal = compared = 0
        for r in (row, other):
            if r and "compared" in r:
                equal += r["equal_to_toolkit_fp32"]
                compared += r["compared"]
        errors = sum(r.get("word_errors_vs_toolkit_fp32", 0) for r in (row, other) if r)
        words = sum(r.get("reference_words", 0) for r in (row, other) if r)
        table.append([row["contender"], row["precision_class"], *cells(row), *cells(other),
                      f"{equal}/{compared}" if compared else "-", f"{errors / max(words, 1):.3f}" if compared else "-"])
    headers = ["contender", "class", "clip s", "RTFx", "x best peer", "x tk fp32",
               "set s", "RTFx", "x best peer", "x tk fp32", "same text", "WER vs tk fp32"]
    return tabulate(table, headers=headers, tablefmt="github")


# --------------------------------------------------------------------------------------------


def read_set(spec: str, limit: Optional[int]) -> list[tuple[str, object]]:
    from common.inputs.audio import load_audio
    from common.inputs.sources import collect_inputs

    items = collect_inputs([spec])
    bad = [item.error for item in items if item.error]
    if bad:
        raise SystemExit(f"--set {spec}: {bad[0]}")
    items = items[:limit] if limit else items
    return [(item.path, load_audio(item.path)) for item in items]


def load_contenders(args, peers: list[str], threads: int, exports: Optional[dict],
                    only: Optional[str] = None) -> tuple[list[Contender], list[dict]]:
    """(contenders, skipped with the reason): the toolkit's variants and the peers', or only the
    one named `only` (--isolate's child)."""
    skipped, contenders = [], []
    shared = None  # the toolkit's variants share one model: the full-size set with every peer fits in 24 GiB
    for dtype in toolkit_dtypes(args.toolkit_dtypes):
        if only not in (None, f"toolkit {dtype}"):
            continue
        try:
            contenders.append(load_toolkit(args.model, dtype, shared))
            shared = contenders[-1].loaded
        except Exception as error:  # e.g. a dtype this CPU or this toolkit version refuses
            skipped.append({"contender": f"toolkit {dtype}", "reason": f"{type(error).__name__}: {error}"})
    loaders = {"onnx-asr": (load_onnx_asr, "onnx_asr"), "sherpa-onnx": (load_sherpa, "sherpa_onnx")}
    for peer in peers:
        loader, module = loaders[peer]
        for dtype in [d for d in args.peer_dtypes.split(",") if d]:
            if only not in (None, f"{peer} {dtype}"):
                continue
            try:
                __import__(module)
            except ImportError as error:
                skipped.append({"contender": f"{peer} {dtype}", "reason": f"{module} does not import: {error}"})
                continue
            try:
                extra = {"arena": args.onnx_asr_arena} if peer == "onnx-asr" else {}
                contenders.append(loader(Path(exports["folder"]) / peer, dtype, threads, exports["facts"], **extra))
            except Exception as error:
                skipped.append({"contender": f"{peer} {dtype}", "reason": f"{type(error).__name__}: {error}"})
    return contenders, skipped


def planned_contenders(args, peers: list[str]) -> list[Contender]:
    """--isolate's contenders as names only: each is loaded by its own child process."""
    planned = [Contender(f"toolkit {d}", "toolkit", d.split("+")[0], None, None, 0.0,
                         notes={"process": "one per round"}) for d in toolkit_dtypes(args.toolkit_dtypes)]
    return planned + [Contender(f"{peer} {d}", peer, d, None, None, 0.0, notes={"process": "one per round"})
                      for peer in peers for d in args.peer_dtypes.split(",") if d]


def in_child_processes(workload: str, argv: list[str]):
    """The timed call of `interleaved` with --isolate: a child process loads that contender alone,
    makes one untimed call, then the timed one. Only one model is in memory at a time, so the
    full-size set fits with every contender."""
    import subprocess

    def call(contender: Contender):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--child", contender.name,
                                "--child-workload", workload], capture_output=True, text=True)
        lines = child.stdout.strip().splitlines()
        out = json.loads(lines[-1]) if child.returncode == 0 and lines else \
            {"error": (child.stderr.strip().splitlines() or [f"exit {child.returncode}"])[-1]}
        if out.get("error"):
            raise ChildFailed(out["error"])
        contender.load_seconds = out["load_seconds"]
        return out["seconds"], out["texts"], {"child_pids": out["pid"]}
    return call


def contender_entries(contenders: list[Contender]) -> list[dict]:
    return [{"name": c.name, "family": c.family, "dtype": c.dtype, "precision_class": c.precision_class,
             "load_seconds": round(c.load_seconds, 2), **c.notes} for c in contenders]


def run_child(args, peers: list[str], threads: int, exports: Optional[dict], clip, clips) -> int:
    """--child NAME: load that contender, call it once untimed and once timed; one JSON line out."""
    contenders, skipped = load_contenders(args, peers, threads, exports, only=args.child)
    if not contenders:
        print(json.dumps({"error": skipped[0]["reason"] if skipped else f"no contender {args.child}"}))
        return 0
    contender = contenders[0]
    call = (lambda: [contender.clip(clip)]) if args.child_workload == "clip" else \
        (lambda: list(contender.set([signal for _, signal in clips])))
    try:
        call()
        gc.collect()
        start = time.perf_counter()
        texts = call()
        seconds = time.perf_counter() - start
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 0
    print(json.dumps({"seconds": seconds, "texts": texts, "load_seconds": contender.load_seconds, "pid": os.getpid()}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: random:parakeet (demo with --smoke)")
    parser.add_argument("--clip", default=os.path.join(REPO, "examples", "sample.wav"),
                        help="the batch-1 clip (default: %(default)s)")
    parser.add_argument("--set", default=None,
                        help="clip set: a folder or a manifest (default: bench/clips/manifest.jsonl; demo/clips with "
                             "--smoke); 'none' skips the set")
    parser.add_argument("--set-limit", type=int, default=None, help="use the first N clips of the set")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"threads for every contender (default: physical cores, {physical_cores()} here)")
    parser.add_argument("--toolkit-dtypes", default=None,
                        help="comma list (default: every dtype of common.engine.precision.DTYPES the CPU runs)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list (default: %(default)s)")
    parser.add_argument("--peer-dtypes", default=",".join(PEER_DTYPES), help="comma list (default: %(default)s)")
    parser.add_argument("--onnx-asr-arena", action="store_true",
                        help="keep ONNX Runtime's CPU memory arena on for onnx-asr (its default; off here by "
                             "default: with it, the full-size set ran out of 24 GiB)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds (default: 1)")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds (default: 5; 1 with --smoke)")
    parser.add_argument("--export-dir", default=None,
                        help="cache of the peers' exports (default: peers/ in $PARAKEET_CACHE_DIR or "
                             "~/.cache/parakeet-npu)")
    parser.add_argument("--smoke", action="store_true",
                        help="CI mode: --model demo, 1 run, the demo clips as the set")
    parser.add_argument("--isolate", action="store_true",
                        help="run each contender's call in a process of its own every round (loaded there, one "
                             "untimed call, then the timed one): one model in memory at a time, so that every "
                             "contender fits beside the full-size set; slower (a load per call)")
    parser.add_argument("--output", default=os.path.join(REPO, "bench", "results", "peers_bench.json"),
                        help="JSON results (default: %(default)s)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # --isolate's: the contender to run
    parser.add_argument("--child-workload", choices=("clip", "set"), default="clip", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.model = args.model or "demo"
        args.runs = 1 if args.runs is None else args.runs
        args.set = args.set or os.path.join(REPO, "demo", "clips")
    args.model = args.model or "random:parakeet"
    args.warmup = 1 if args.warmup is None else args.warmup
    args.runs = 5 if args.runs is None else args.runs
    args.set = args.set or os.path.join(REPO, "bench", "clips", "manifest.jsonl")
    threads = args.threads or physical_cores()
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"--peers: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    export_root = Path(args.export_dir) if args.export_dir else default_export_dir()

    import torch

    from common.device.environment import collect_environment
    from common.inputs.audio import load_audio

    torch.set_num_threads(threads)
    limits = limit_blas_threads(threads)
    clip = load_audio(args.clip)
    clips = [] if args.set == "none" else read_set(args.set, args.set_limit)
    if not args.child:
        print(f"peers_bench: model {args.model}, {threads} threads, clip {len(clip) / SAMPLE_RATE:.2f} s, "
              f"set {len(clips)} clips", file=sys.stderr)

    skipped, contenders = [], []
    exports = None
    if peers:
        print("peers_bench: exports ...", file=sys.stderr)
        exports = ensure_exports(args.model, export_root)
        print(f"peers_bench: exports in {exports['folder']} ({'reused' if exports['reused'] else 'made'}, "
              f"{exports['seconds']} s)", file=sys.stderr)
    if args.child:
        return run_child(args, peers, threads, exports, clip, clips)
    if args.isolate:
        contenders = planned_contenders(args, peers)
    else:
        contenders, skipped = load_contenders(args, peers, threads, exports)
    for entry in skipped:
        print(f"peers_bench: skipped {entry['contender']}: {entry['reason']}", file=sys.stderr)
    names = [c.name for c in contenders]
    reference = "toolkit fp32"
    if reference not in names:
        print("peers_bench: no toolkit fp32 contender: transcripts are not compared", file=sys.stderr)

    result = {"what_is_timed": __doc__.split("\n\n")[2], "argv": list(sys.argv[1:] if argv is None else argv),
              "environment": collect_environment(["cpu"], " ".join(sys.argv)), "model": args.model,
              "threads": threads, "blas_threads_limited": limits, "warmup": args.warmup, "runs": args.runs,
              "reference": reference, "exports": exports, "skipped": skipped, "isolate": args.isolate, "pid": os.getpid(),
              "contenders": contender_entries(contenders)}
    clip_seconds = len(clip) / SAMPLE_RATE
    print(f"peers_bench: clip, {len(contenders)} contenders x {args.warmup}+{args.runs} rounds ...", file=sys.stderr)
    child_argv = ["--model", args.model, "--threads", str(threads), "--export-dir", str(export_root),
                  "--clip", args.clip, "--set", args.set, "--peers", ",".join(peers), "--peer-dtypes", args.peer_dtypes,
                  "--toolkit-dtypes", ",".join(toolkit_dtypes(args.toolkit_dtypes)),
                  *(["--set-limit", str(args.set_limit)] if args.set_limit else []),
                  *(["--onnx-asr-arena"] if args.onnx_asr_arena else [])]

    def timed(workload: str, payload) -> dict:
        call = in_child_processes(workload, child_argv) if args.isolate else in_this_process(workload, payload)
        return interleaved(contenders, args.warmup, args.runs, call)

    clip_results = timed("clip", clip)
    result["clip"] = {"path": args.clip, "audio_seconds": round(clip_seconds, 3),
                      "rows": workload_rows(contenders, clip_results, clip_seconds, reference)}
    write_json_atomic(args.output, result)  # the clip's results survive a set that runs out of memory
    if clips:
        signals = [signal for _, signal in clips]
        set_seconds = sum(len(s) for s in signals) / SAMPLE_RATE
        print(f"peers_bench: set ({len(signals)} clips, {set_seconds:.1f} s) ...", file=sys.stderr)
        set_results = timed("set", signals)
        result["set"] = {"source": args.set, "files": [path for path, _ in clips],
                         "audio_seconds": round(set_seconds, 2),
                         "rows": workload_rows(contenders, set_results, set_seconds, reference)}
    result["contenders"] = contender_entries(contenders)  # --isolate: with the children's load times
    result["transcripts_vs_reference"] = transcript_summary(result)
    table = ratio_table(result["clip"]["rows"], result.get("set", {}).get("rows"))
    result["table"] = table
    result["table_legend"] = ("seconds are medians; RTFx = audio seconds / seconds; 'x best peer' = the fastest peer "
                              "of the same precision class (fp32 | reduced: bf16/fp16/int8) / this, 'x tk fp32' = "
                              "toolkit fp32 / this (both: > 1 is faster); 'same text' counts clip and set texts "
                              "equal to the toolkit fp32 ones")
    write_json_atomic(args.output, result)
    print(table)
    print(f"peers_bench: {threads} threads; results in {args.output}", file=sys.stderr)
    failed = [r["contender"] for part in ("clip", "set") for r in result.get(part, {}).get("rows", []) if "error" in r]
    return 1 if failed else 0


def limit_blas_threads(threads: int) -> Optional[str]:
    """numpy's BLAS (onnx-asr's preprocessor on the CPU) to `threads` as well, where threadpoolctl is there."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    global _BLAS_LIMITS
    _BLAS_LIMITS = threadpool_limits(limits=threads, user_api="blas")
    return f"blas {threads} (threadpoolctl)"


_BLAS_LIMITS = None

if __name__ == "__main__":
    sys.exit(main())
