"""What the toolkit assumes about the installed NeMo, checked against NeMo itself."""

from __future__ import annotations

import numpy as np
import torch

from common.engine import batched
from common.model.loading import import_nemo_asr


def nemo_padded_length(samples: int) -> np.ndarray:
    """What NeMo's transcribe() dataset for in-memory audio makes of a clip of `samples` ones."""
    import_nemo_asr()
    from nemo.collections.asr.parts.mixins.transcription import TranscriptionTensorDataset

    dataset = TranscriptionTensorDataset({"audio_tensors": [torch.ones(samples)], "channel_selector": None,
                                          "sample_rate": 16000})
    return dataset[0][0].numpy()


def test_short_clip_padding_follows_the_installed_nemo():
    clip = np.ones(4001, dtype=np.float32)  # 0.25 s, odd padding: the split must match too
    assert np.array_equal(batched.pad_short(clip), nemo_padded_length(len(clip)))
    assert np.array_equal(batched.pad_short(np.ones(20000, np.float32)), nemo_padded_length(20000))


def test_padding_versions():
    assert [batched.pads_short_clips(v) for v in ("2.2.0", "2.6.2", "2.7.0", "2.7.0rc1", "3.0.0", "10.1")] == \
        [False, False, True, True, True, True]
    assert not batched.pads_short_clips(None) and not batched.pads_short_clips("unknown")
