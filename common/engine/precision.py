"""Compute precision: fp32, or bf16/fp16 autocast around the encoder and decoder.

NeMo's preprocessor turns autocast off inside itself, so features stay fp32 either way."""

from __future__ import annotations

import contextlib

from ..errors import SetupError

DTYPES = ("fp32", "bf16", "fp16")


def check_dtype(name: str) -> str:
    if name not in DTYPES:
        raise SetupError(f"--dtype {name!r}: not one of {', '.join(DTYPES)}")
    return name


def autocast(device: str, dtype: str = "fp32"):
    """A context that runs the model at `dtype` on `device` (nothing changes for fp32)."""
    if check_dtype(dtype) == "fp32":
        return contextlib.nullcontext()
    import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype)
