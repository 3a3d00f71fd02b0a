"""The transcription engine: audio inputs in, per-file results out, in input order.

Audio is decoded and validated here (16 kHz mono) and planned into batches, then run by one of
two engines: batched (the default: preprocessor, encoder and decoding called directly on padded
tensors, common/engine/batched.py) or nemo (NeMo's own `model.transcribe()` on in-memory arrays).
A file that cannot be decoded, or that makes its batch fail, becomes an error for that file only.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from ..choices import (BATCH_SIZE, DEFAULT_DTYPE, DEFAULT_ENCODER_RUNTIME, DEFAULT_ENGINE, DEFAULT_GRAPH_MODE,
                       LONG_AUDIO_SECONDS)
from ..device.clocks import module_timer
from ..errors import SetupError, ToolkitError
from ..inputs.audio import SAMPLE_RATE, duration_seconds
from ..inputs.sources import AudioInput, read_signal
from ..model.loading import LoadedModel
from ..signals import interruption
from .batched import decode_batch, per_clip_token_durations, tdt_loop
from .encoders import encoder_at
from .graph_decoding import use_decode_graphs
from .long_audio import long_audio_encoder
from .lstm import lstm_kernels
from .precision import autocast, fp32_features
from .records import FileRecord, Timestamp, Transcript



@dataclass(frozen=True)
class TranscribeOptions:
    batch_size: int = BATCH_SIZE
    timestamp_kinds: tuple[str, ...] = ()  # which of TIMESTAMP_KINDS to report
    dtype: str = DEFAULT_DTYPE  # fp32; bf16/fp16 autocast; int8 (CPU) quantized encoder: common/engine/encoders.py
    engine: str = DEFAULT_ENGINE  # batched: preprocessor/encoder/decoding by hand; nemo: model.transcribe()
    batch_seconds: Optional[float] = None  # audio budget per batch, longest first; None: input order
    long_audio_seconds: float = LONG_AUDIO_SECONDS  # above this, alone and with local attention
    decode_graphs: str = DEFAULT_GRAPH_MODE  # off/on/auto: TDT decoding replayed from npu graphs (graph_decoding.py)
    encoder_runtime: str = DEFAULT_ENCODER_RUNTIME  # torch; onnxruntime: the CPU fp32 encoder in ONNX Runtime (onnx_encoder.py)
    debug: bool = False  # re-raise model failures instead of recording them per file


def plan_batches(durations: list[float], max_files: int, max_seconds: Optional[float],
                 alone_above: Optional[float] = None) -> list[list[int]]:
    """Batches of input indices. Without a seconds budget: input order, `max_files` per batch.
    With one: longest first, each batch growing while its padded audio (files x longest) stays
    within `max_seconds` and its size within `max_files`; minimal padding, few model calls.
    Either way inputs longer than `alone_above` (long audio, run with local attention) get
    batches of their own: padded to their length, short inputs would cost as much memory."""
    def alone(index: int) -> bool:
        return alone_above is not None and durations[index] > alone_above

    def joins(batch: list[int], index: int) -> bool:
        fits_budget = max_seconds is None or (len(batch) + 1) * durations[batch[0]] <= max_seconds
        return len(batch) < max_files and not alone(batch[0]) and not alone(index) and fits_budget

    order = range(len(durations)) if max_seconds is None else sorted(range(len(durations)),
                                                                     key=lambda i: (-durations[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches and joins(batches[-1], index):
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def batches_for(durations: list[float], options: TranscribeOptions) -> list[list[int]]:
    """The batch plan every caller uses, so that long inputs always run alone."""
    return plan_batches(durations, max(1, options.batch_size), options.batch_seconds, options.long_audio_seconds)


def transcribe_inputs(loaded: LoadedModel, items: Iterable[AudioInput], options: TranscribeOptions,
                      progress: bool = False) -> Iterator[list[tuple[int, FileRecord]]]:
    """For each batch as it finishes, its (input index, FileRecord) pairs (with a seconds budget
    batches are not in input order; sort by index for it)."""
    from tqdm import tqdm

    items = list(items)
    durations = [planning_duration(item) for item in items]
    with tqdm(total=len(items), unit="file", disable=not progress, leave=False) as bar:
        for batch in batches_for(durations, options):
            yield list(zip(batch, _transcribe_chunk(loaded, [items[i] for i in batch], options)))
            bar.update(len(batch))


def planning_duration(item: AudioInput) -> float:
    """Duration for batch planning, from the header (no decoding); 0 for unreadable inputs."""
    if item.error:
        return 0.0
    if item.duration is not None:
        return item.duration
    try:
        import soundfile

        if item.embedded is not None:  # audio bytes inside a dataset: their header, without decoding
            import io

            return float(soundfile.info(io.BytesIO(item.embedded.fetch())).duration)
        return float(soundfile.info(item.path).duration)
    except Exception:
        return 0.0


def _transcribe_chunk(loaded: LoadedModel, chunk: list[AudioInput], options: TranscribeOptions) -> list[FileRecord]:
    results, signals = [], []
    for item in chunk:
        result = FileRecord(item.path, duration=item.duration, truth=item.text, error=item.error,
                            warning=item.warning)
        if result.ok:
            try:
                signal = read_signal(item)
                result.duration = round(duration_seconds(signal), 4)
                signals.append((result, signal))
            except ToolkitError as error:
                result.error = str(error)
        results.append(result)
    if signals:
        _decode_signals(loaded, signals, options)
    return results


def _decode_signals(loaded: LoadedModel, signals: list, options: TranscribeOptions) -> None:
    try:
        transcripts = transcribe_signals(loaded, [signal for _, signal in signals], options)
    except Exception as error:
        if interruption(error) is not None:
            raise interruption(error) from error
        if options.debug or len(signals) == 1:
            if options.debug:
                raise
            signals[0][0].error = f"{signals[0][0].path}: transcription failed ({type(error).__name__}: {error})"
            return
        # One file may have broken the whole batch: retry each alone so the others still succeed.
        for pair in signals:
            _decode_signals(loaded, [pair], options)
        return
    for (result, _), transcript in zip(signals, transcripts):
        result.text, result.timestamps = transcript.text, transcript.timestamps
        result.attention = transcript.attention


def transcribe_signals(loaded: LoadedModel, signals: list, options: TranscribeOptions,
                       stages: Optional[dict] = None, counts: Optional[dict] = None) -> list[Transcript]:
    """Transcribe 16 kHz mono arrays with the chosen engine and precision, as one batch, except
    that signals longer than `options.long_audio_seconds` run alone with local attention.
    `stages` receives seconds per stage: features, encoder and (batched engine) decoding;
    `counts` what a counting backend counted per stage (common/device/counters.py)."""
    durations = [len(s) / SAMPLE_RATE for s in signals]
    transcripts: list = [None] * len(signals)
    for batch in plan_batches(durations, len(signals), None, options.long_audio_seconds):
        long_audio = durations[batch[0]] > options.long_audio_seconds
        batch_transcripts = _transcribe_batch(loaded, [signals[i] for i in batch], options, long_audio, stages, counts)
        for index, transcript in zip(batch, batch_transcripts):
            transcripts[index] = transcript
    return transcripts


def _transcribe_batch(loaded: LoadedModel, signals: list, options: TranscribeOptions, long_audio: bool,
                      stages: Optional[dict], counts: Optional[dict]) -> list[Transcript]:
    attention = long_audio_encoder(loaded.model) if long_audio else contextlib.nullcontext()
    with attention as mode, encoder_at(loaded, options.dtype, mode, options.encoder_runtime), \
            lstm_kernels(loaded.model, loaded.decoder_device or loaded.device, options.dtype):
        hypotheses = _run_engine(loaded, signals, options, stages, counts)
    frame_seconds = seconds_per_encoder_frame(loaded.model)
    return [
        Transcript(h.text, timestamps_in_seconds(h, options.timestamp_kinds, frame_seconds,
                                                 duration_seconds(signal))
                   if options.timestamp_kinds else None, mode)
        for h, signal in zip(hypotheses, signals)
    ]


def _run_engine(loaded: LoadedModel, signals: list, options: TranscribeOptions, stages: Optional[dict],
                counts: Optional[dict]) -> list:
    model, device = loaded.model, loaded.device
    use_decode_graphs(model, options.decode_graphs, tdt_loop(model))  # before the per-clip hook: under it
    per_clip_token_durations(model)
    if options.engine == "batched":
        return decode_batch(model, signals, device, options.dtype, stages, loaded.decoder_device, counts)
    if loaded.decoder_device not in (None, device):
        raise SetupError("the nemo engine runs the decoder where the encoder runs; use the batched engine "
                         "for --decoder-device")
    with contextlib.ExitStack() as stack:
        if stages is not None:
            stack.enter_context(module_timer(model.preprocessor, device, stages, "features", counts))
            stack.enter_context(module_timer(model.encoder, device, stages, "encoder", counts))
        stack.enter_context(autocast(device, options.dtype))
        if options.dtype != "fp32":
            stack.enter_context(fp32_features(model.preprocessor, device))
        return run_nemo_transcribe(model, signals)


def run_nemo_transcribe(model, signals: list) -> list:
    """NeMo's own transcribe() on in-memory 16 kHz arrays, as one batch; returns Hypotheses."""
    output = model.transcribe(signals, override_config=transcribe_config(model, len(signals)))
    # NeMo's transcribe() ends by unfreezing encoder and decoder, which puts them in training
    # mode (dropout on): anything run on the model afterwards would be silently random.
    model.eval()
    if isinstance(output, tuple):  # some NeMo versions return (best, all)
        output = output[0]
    return list(output)


def transcribe_config(model, batch_size: int):
    """transcribe()'s settings for one batch of in-memory clips, treated as NeMo treats files."""
    config = model.get_transcribe_config()
    config.batch_size, config.return_hypotheses, config.verbose, config.num_workers = batch_size, True, False, 0
    # From 2.7 on NeMo pads in-memory clips shorter than `pad_min_duration` (default 1 s), which
    # file paths are not, and gives other texts for them; it looks the setting up on this config
    # by name, so 0 turns the padding off (and versions without it ignore the attribute).
    config.pad_min_duration = 0.0
    return config


def seconds_per_encoder_frame(model) -> float:
    return float(model.cfg.preprocessor.window_stride) * int(model.encoder.subsampling_factor)


def timestamps_in_seconds(hypothesis, kinds: tuple[str, ...], frame_seconds: float, duration: float) -> dict:
    """NeMo's word/segment/char offsets (encoder frames) as seconds, the way NeMo converts them,
    within [0, duration]: a token's predicted duration can reach frames past the audio's end."""
    raw = getattr(hypothesis, "timestamp", None) or getattr(hypothesis, "timestep", None) or {}
    out = {}
    for kind in kinds:
        entries = raw.get(kind) if isinstance(raw, dict) else None
        out[kind] = [Timestamp(_entry_text(entry, kind), _seconds(entry["start_offset"], frame_seconds, duration),
                               _seconds(entry["end_offset"], frame_seconds, duration))
                     for entry in entries or []]
    return out


def _seconds(offset: int, frame_seconds: float, duration: float) -> float:
    """Frame offset in seconds to the millisecond, rounded down at the end so it never exceeds
    the duration."""
    return max(0.0, min(round(offset * frame_seconds, 3), math.floor(duration * 1000) / 1000))


def _entry_text(entry: dict, kind: str) -> str:
    value = entry.get(kind)
    if isinstance(value, (list, tuple)):  # char entries hold a list of characters
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)
