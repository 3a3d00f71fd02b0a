"""Compute precision: fp32, or bf16/fp16 autocast around the encoder and decoder.

Features are always computed in fp32: NeMo 3.0's preprocessor turns autocast off inside itself,
NeMo 2.2's does not (its STFT and mel projection then run in bf16: features 0.03 apart, other
words), so `fp32_features` does it for NeMo's own transcribe() on every version."""

from __future__ import annotations

import contextlib

from ..errors import SetupError

DTYPES = ("fp32", "bf16", "fp16")


def check_dtype(name: str) -> str:
    if name not in DTYPES:
        raise SetupError(f"--dtype {name!r}: not one of {', '.join(DTYPES)}")
    return name


def check_dtype_for_device(dtype: str, device: str) -> None:
    """Refuse a precision the device cannot run, before any model is loaded. `device` is a resolved
    torch device string ("cpu", "cuda:0", "npu:0") or an explicit --device value; call it again
    once --device auto is resolved."""
    if dtype == "fp16" and device.split(":")[0].strip().lower() == "cpu":
        # oneDNN has no fp16 LSTM (the TDT prediction net) and few fp16 convs: every file would fail.
        raise SetupError("--dtype fp16: not supported on the CPU (fp16 LSTM/conv kernels are missing there); "
                         "use bf16 or fp32")


def autocast(device: str, dtype: str = "fp32"):
    """A context that runs the model at `dtype` on `device` (nothing changes for fp32)."""
    if check_dtype(dtype) == "fp32":
        return contextlib.nullcontext()
    import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype)


@contextlib.contextmanager
def fp32_features(preprocessor, device: str):
    """Inside the block, `preprocessor` runs with autocast off, whatever surrounds it."""
    import torch

    original, own = preprocessor.forward, vars(preprocessor).get("forward")

    def forward(*args, **kwargs):
        with torch.autocast(device_type=device.split(":")[0], enabled=False):
            return original(*args, **kwargs)

    preprocessor.forward = forward
    try:
        yield
    finally:
        if own is None:
            del preprocessor.forward  # back to the class's own method
        else:
            preprocessor.forward = own
