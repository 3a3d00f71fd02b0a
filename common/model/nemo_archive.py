"""The .nemo format: a tar holding model_config.yaml, model_weights.ckpt and artifacts (the
tokenizer). Validation and config reading here never touch the weights."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from ..errors import SetupError

CONFIG_NAME = "model_config.yaml"
WEIGHTS_NAME = "model_weights.ckpt"


class ModelError(SetupError):
    pass


def check_nemo_archive(path: str) -> None:
    """A .nemo is a tar holding model_config.yaml and the weights; checked from the headers only."""
    if os.path.getsize(path) == 0:
        raise ModelError(f"--model {path}: not a .nemo archive (empty file)")
    try:
        names = []
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                names.append(os.path.basename(member.name))
                if CONFIG_NAME in names and WEIGHTS_NAME in names:
                    break
    except (tarfile.TarError, EOFError, OSError):
        raise ModelError(f"--model {path}: not a .nemo archive (not a readable tar file)") from None
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if required not in names:
            raise ModelError(f"--model {path}: not a .nemo archive (no {required} inside)")


def check_extracted_dir(path: str) -> None:
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not os.path.isfile(os.path.join(path, required)):
            raise ModelError(f"--model {path}: folder is not an extracted .nemo (no {required})")


def read_nemo_config(path: str) -> dict:
    """model_config.yaml from a .nemo (tar) or extracted folder, as a plain dict."""
    import yaml

    if os.path.isdir(path):
        return yaml.safe_load(Path(path, CONFIG_NAME).read_text(encoding="utf-8"))
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if os.path.basename(member.name) == CONFIG_NAME:
                return yaml.safe_load(archive.extractfile(member).read())
    raise ValueError(f"no {CONFIG_NAME}")
