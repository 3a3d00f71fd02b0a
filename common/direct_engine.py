"""The direct engine: preprocessor -> encoder -> TDT decoding on in-memory tensors, each stage
timed with the device synchronized. It does what NeMo's transcribe() does per batch, without
its dataloader, so the same padded batch gives the same hypotheses."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .precision import autocast
from .timing import timed

STAGES = ("features", "encoder", "decoding")


def pad_batch(signals: list[np.ndarray]):
    """Zero-padded [B, T] float32 batch and lengths, as NeMo's collate function builds it."""
    import torch

    lengths = torch.tensor([len(s) for s in signals], dtype=torch.long)
    batch = torch.zeros(len(signals), int(lengths.max()), dtype=torch.float32)
    for row, signal in enumerate(signals):
        batch[row, : len(signal)] = torch.from_numpy(np.asarray(signal, dtype=np.float32))
    return batch, lengths


def decode_batch(model, signals: list[np.ndarray], device: str, dtype: str = "fp32",
                 stages: Optional[dict] = None) -> list:
    """Hypotheses for one batch; adds per-stage seconds to `stages` when given."""
    import torch

    stages = {} if stages is None else stages
    if model.encoder.training or model.decoder.training:
        model.eval()  # never decode with dropout on, whoever left the model in training mode
    batch, lengths = pad_batch(signals)
    with torch.inference_mode():
        with timed(device, stages, "features"):
            audio, audio_lengths = batch.to(device), lengths.to(device)
            features, feature_lengths = model.preprocessor(input_signal=audio, length=audio_lengths)
        with autocast(device, dtype):
            with timed(device, stages, "encoder"):
                encoded, encoded_lengths = model.encoder(audio_signal=features, length=feature_lengths)
            with timed(device, stages, "decoding"):
                hypotheses = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=encoded, encoded_lengths=encoded_lengths, return_hypotheses=True)
    if isinstance(hypotheses, tuple):  # NeMo 2.x returns (best, all)
        hypotheses = hypotheses[0]
    return list(hypotheses)
