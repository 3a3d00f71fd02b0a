"""The batched engine: preprocessor -> encoder -> TDT decoding on in-memory tensors, each stage
timed (when asked) with the device synchronized. It does what NeMo's transcribe() does per batch, without
its dataloader, so the same padded batch gives the same hypotheses."""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import numpy as np

from ..device.clocks import timed
from .precision import autocast


def pad_batch(signals: list[np.ndarray]):
    """Zero-padded [B, T] float32 batch and lengths, as NeMo's collate builds it. Clips are not
    padded to a minimum length: NeMo transcribing a file path does not do so either."""
    import torch

    signals = [np.asarray(s, dtype=np.float32) for s in signals]
    lengths = torch.tensor([len(s) for s in signals], dtype=torch.long)
    batch = torch.zeros(len(signals), int(lengths.max()), dtype=torch.float32)
    for row, signal in enumerate(signals):
        batch[row, : len(signal)] = torch.from_numpy(signal)
    return batch, lengths


def decode_batch(model, signals: list[np.ndarray], device: str, dtype: str = "fp32",
                 stages: Optional[dict] = None, decoder_device: Optional[str] = None,
                 counts: Optional[dict] = None) -> list:
    """Hypotheses for one batch; adds per-stage seconds to `stages` when given (each stage then
    synchronizes the device at its ends: without `stages` nothing waits inside the batch). With a
    `decoder_device` other than `device`, the encoder output crosses to it once and the TDT
    decoder and joint (already placed there) decode on it."""
    import torch

    def probe(stage_device: str, stage: str):
        return contextlib.nullcontext() if stages is None else timed(stage_device, stages, stage, counts)

    if model.encoder.training or model.decoder.training:
        model.eval()  # never decode with dropout on, whoever left the model in training mode
    batch, lengths = pad_batch(signals)
    with torch.inference_mode():
        with probe(device, "features"):
            audio, audio_lengths = batch.to(device), lengths.to(device)
            features, feature_lengths = model.preprocessor(input_signal=audio, length=audio_lengths)
        with autocast(device, dtype):
            with probe(device, "encoder"):
                encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
        if decoder_device and decoder_device != device:
            with probe(device, "transfer"):
                encoded, encoded_lengths = encoded.to(decoder_device), encoded_lengths.to(decoder_device)
        with autocast(decoder_device or device, dtype):
            with probe(decoder_device or device, "decoding"):
                hypotheses = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=encoded, encoded_lengths=encoded_lengths, return_hypotheses=True)
    if isinstance(hypotheses, tuple):  # NeMo 2.x returns (best, all)
        hypotheses = hypotheses[0]
    return list(hypotheses)


# Where NeMo's TDT label-looping computer lives and which method runs its pure-PyTorch loop:
# NeMo 2.7 and 3.0 `decoding_computer.torch_impl(encoder_output, encoder_output_length,
# prev_batched_state, ...)`, returning (hyps, state) in 3.0 and (hyps, alignments, state) in 2.7;
# NeMo 2.2 `_decoding_computer.loop_labels_torch(encoder_output=..., encoder_output_length=...)`,
# returning (hyps, alignments, state). Hypotheses come first in all of them.
_COMPUTER_LOOPS = (("decoding_computer", "torch_impl"), ("_decoding_computer", "loop_labels_torch"))


def tdt_loop(model):
    """(computer, name of its pure-PyTorch loop method) of the model's TDT greedy_batch decoding,
    or (None, None) where the decoding is not TDT label looping."""
    greedy = getattr(model.decoding, "decoding", None)
    for attribute, method in _COMPUTER_LOOPS:
        computer = getattr(greedy, attribute, None)
        if computer is not None and hasattr(computer, "durations") and hasattr(computer, method):
            return computer, method
    return None, None


def per_clip_token_durations(model) -> None:
    """Make the model's batched TDT decoding report each token's own duration, so that a clip's
    end times do not depend on its batch mates (both engines decode through it).

    NeMo up to 3.0 (issue #16097, fixed by PR #16098) overwrites, in the pure-PyTorch loop used
    off CUDA graphs, the duration of a token already found with the one predicted for the next
    frame while other clips in the batch still search for theirs. Labels and frames are right;
    only the durations, hence end offsets, are stale. Idempotent; a no-op where the decoding is
    not TDT label looping (changing the decoding strategy builds a new computer: call it again)."""
    computer, method = tdt_loop(model)
    if computer is None or hasattr(getattr(computer, method), "per_clip"):
        return
    original = getattr(computer, method)

    @functools.wraps(original)
    def loop(*args, **kwargs):
        result = original(*args, **kwargs)
        hyps = result[0]
        encoder_output = kwargs["encoder_output"] if "encoder_output" in kwargs else args[0]
        previous_state = kwargs.get("prev_batched_state", args[2] if len(args) > 2 else None)
        # The graph path (graph_decoding.py) runs NeMo's graph steps, which keep each clip's own
        # durations: nothing to fix there.
        # A clip decoded alone has no batch mates to take its durations from.
        if getattr(computer, "include_duration", True) and getattr(hyps, "token_durations", None) is not None \
                and previous_state is None and not getattr(hyps, "durations_per_clip", False) \
                and hyps.token_durations.shape[0] > 1:
            _recompute_durations(computer, encoder_output, hyps)
        return result

    loop.per_clip = True
    setattr(computer, method, loop)


def _recompute_durations(computer, encoder_output, hyps) -> None:
    """Each found token's duration as NeMo predicts it decoding the clip alone: the argmax of the
    joint's duration outputs at the token's frame, given the prediction network after the tokens
    before it (start of sequence for the first)."""
    import torch

    width = int(hyps.current_lengths.max())
    if width == 0:
        return
    labels, frames = hyps.transcript[:, :width], hyps.timestamps[:, :width]
    # Past a clip's own tokens the buffers hold whatever the loop left there (NeMo 2.2 writes the
    # frame counters of finished clips, beyond the encoder output): decode blanks at frame 0 there
    # and keep those entries as they were.
    valid = torch.arange(width, device=frames.device)[None, :] < hyps.current_lengths[:, None]
    labels = torch.where(valid, labels, torch.full_like(labels, computer._SOS))
    frames = torch.where(valid, frames, torch.zeros_like(frames))
    batch = labels.shape[0]
    previous = torch.cat([torch.full_like(labels[:, :1], computer._SOS), labels[:, :-1]], dim=1)
    predicted, *_ = computer.decoder.predict(previous, None, add_sos=False, batch_size=batch)
    joint = computer.joint
    rows = torch.arange(batch, device=frames.device)[:, None]
    encoder_at_tokens = joint.project_encoder(encoder_output)[rows, frames]
    logits = joint.joint_after_projection(encoder_at_tokens.reshape(batch * width, 1, -1),
                                          joint.project_prednet(predicted).reshape(batch * width, 1, -1))
    durations = computer.durations.to(logits.device)
    choice = logits.reshape(batch, width, -1)[..., -len(durations):].argmax(dim=-1)
    hyps.token_durations[:, :width] = torch.where(valid, durations[choice], hyps.token_durations[:, :width])
