"""What the engine derives from a model's weights once and keeps on disk (ONNX Runtime's graph of
the encoder, the int8 encoder's weights): where it lives and what its entries are named after."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Optional

import torch


def cache_folder(name: str) -> Path:
    from ..model.random_models import default_cache_dir

    return default_cache_dir() / name


def source_key(source, versions: str) -> Optional[str]:
    """A name for what is derived with the software in `versions` from the model file of
    `source` (path, size, mtime), known before the model is loaded; None for a model without a
    file of its own (a pretrained name), whose weights must be read to name it (`derived_key`)."""
    from ..model.loading import model_identity
    from ..model.random_models import random_model_path

    if source.kind == "random":  # built once into a cached .nemo: that file is the model
        source = dataclasses.replace(source, path=str(random_model_path(source.spec)))
    if source.path is None or not os.path.exists(source.path):
        return None
    return _hashed(f"{model_identity(source)} {versions}")


def derived_key(loaded, versions: str) -> str:
    """`source_key`, or for a model without a file the hash of its encoder's weights (1-2 s for
    parakeet's)."""
    from ..model.loading import model_identity

    key = source_key(loaded.source, versions)
    if key is not None:
        return key
    digest = hashlib.sha256()
    for name, tensor in loaded.model.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return _hashed(f"{model_identity(loaded.source)} {digest.hexdigest()} {versions}")


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]
