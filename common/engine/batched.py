"""The batched engine: preprocessor -> encoder -> TDT decoding on in-memory tensors, each stage
timed with the device synchronized. It does what NeMo's transcribe() does per batch, without
its dataloader, so the same padded batch gives the same hypotheses."""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np

from ..device.clocks import timed
from .precision import autocast

# NeMo's documented setting for long audio: local attention and chunked subsampling convolutions.
LOCAL_ATTENTION = ("rel_pos_local_attn", [128, 128])


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
    """Hypotheses for one batch; adds per-stage seconds to `stages` when given. With a
    `decoder_device` other than `device`, the encoder output crosses to it once and the TDT
    decoder and joint (already placed there) decode on it."""
    import torch

    stages = {} if stages is None else stages
    if model.encoder.training or model.decoder.training:
        model.eval()  # never decode with dropout on, whoever left the model in training mode
    batch, lengths = pad_batch(signals)
    with torch.inference_mode():
        with timed(device, stages, "features", counts):
            audio, audio_lengths = batch.to(device), lengths.to(device)
            features, feature_lengths = model.preprocessor(input_signal=audio, length=audio_lengths)
        with autocast(device, dtype):
            with timed(device, stages, "encoder", counts):
                encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
        if decoder_device and decoder_device != device:
            with timed(device, stages, "transfer", counts):
                encoded, encoded_lengths = encoded.to(decoder_device), encoded_lengths.to(decoder_device)
        with autocast(decoder_device or device, dtype):
            with timed(decoder_device or device, stages, "decoding", counts):
                hypotheses = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=encoded, encoded_lengths=encoded_lengths, return_hypotheses=True)
    if isinstance(hypotheses, tuple):  # NeMo 2.x returns (best, all)
        hypotheses = hypotheses[0]
    return list(hypotheses)


@contextlib.contextmanager
def local_attention(model):
    """Run the encoder with local attention (linear memory in audio length) inside the block,
    then switch back to the model's own attention."""
    encoder_cfg = model.cfg.encoder
    original_model = encoder_cfg.get("self_attention_model", "rel_pos")
    original_context = list(encoder_cfg.get("att_context_size", [-1, -1]) or [-1, -1])
    original_chunking = encoder_cfg.get("subsampling_conv_chunking_factor", 1)
    model.change_attention_model(LOCAL_ATTENTION[0], LOCAL_ATTENTION[1], update_config=False)
    model.change_subsampling_conv_chunking_factor(1, update_config=False)
    model.eval()  # the new attention modules are created in training mode (dropout on)
    try:
        yield f"{LOCAL_ATTENTION[0]} {LOCAL_ATTENTION[1]}"
    finally:
        model.change_attention_model(original_model, original_context, update_config=False)
        model.change_subsampling_conv_chunking_factor(original_chunking, update_config=False)
        model.eval()
