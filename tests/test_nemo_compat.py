"""What the toolkit assumes about the installed NeMo, checked against NeMo itself."""

from __future__ import annotations

import torch

from common.engine.transcriber import transcribe_config


def test_in_memory_clips_reach_the_model_unpadded(nemo_model, tmp_path):
    """NeMo (2.7 on) pads in-memory clips under 1 s unless the config says otherwise; the nemo
    engine's config must reach its dataset and keep a 0.25 s clip as it is, like a file path."""
    from nemo.collections.asr.parts.mixins.transcription import TranscriptionTensorDataset

    clip = torch.ones(4001)
    config = transcribe_config(nemo_model, batch_size=1)
    dataset_config = nemo_model._transcribe_input_tensor_processing([clip], str(tmp_path), config)
    assert torch.equal(TranscriptionTensorDataset(dataset_config)[0][0], clip)
