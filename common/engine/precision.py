"""Compute precision: fp32; bf16/fp16 autocast around the encoder and decoder (the encoder's
matmul weights cast once, common/engine/encoders.py); int8, an encoder whose matmuls run in int8
on the CPU (common/engine/int8.py), with the decoder in fp32.

Features are always computed in fp32: NeMo 3.0's preprocessor turns autocast off inside itself,
NeMo 2.2's does not (its STFT and mel projection then run in bf16: features 0.03 apart, other
words), so `fp32_features` does it for NeMo's own transcribe() on every version."""

from __future__ import annotations

import contextlib
import functools

from ..choices import DTYPES, ENCODER_RUNTIMES
from ..device import accelerators
from ..errors import SetupError
from .forwards import wrapped_forward



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
                         "use bf16, int8 or fp32")
    if dtype == "int8" and device.split(":")[0].strip().lower() not in ("cpu", "auto"):
        raise SetupError(f"--dtype int8: CPU only (its int8 matmuls are oneDNN's CPU kernels); "
                         f"use bf16 or fp16 on {device}")


def check_encoder_runtime(runtime: str, device: str, dtype: str, packages: bool = True) -> None:
    """Refuse what ONNX Runtime cannot do here, before any model is loaded: it runs the CPU fp32
    encoder only, and needs the onnxruntime package (requirements-onnx.txt)."""
    if runtime == "torch":
        return
    if runtime not in ENCODER_RUNTIMES:
        raise SetupError(f"--encoder-runtime {runtime!r}: not one of {', '.join(ENCODER_RUNTIMES)}")
    if device.split(":")[0] not in ("cpu", "auto"):
        raise SetupError(f"--encoder-runtime onnxruntime: CPU only, not {device}; use --encoder-runtime torch there")
    if dtype != "fp32":
        raise SetupError(f"--encoder-runtime onnxruntime: fp32 only, not --dtype {dtype} "
                         f"(bf16 and int8 run faster in torch on this CPU)")
    if not packages:
        return
    import importlib.util

    for package in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(package) is None:
            raise SetupError(f"--encoder-runtime onnxruntime: {package} is not installed; "
                             f"pip install -r requirements-onnx.txt -c constraints.txt")


def runtime_applies(runtime: str, device: str, dtype: str) -> bool:
    """Whether `runtime` can run the encoder for `device` at `dtype` (a sweep skips the rest)."""
    try:
        check_encoder_runtime(runtime, device, dtype, packages=False)
    except SetupError:
        return False
    return True


def check_encoder_runtimes(runtimes: list, devices: list, dtypes: list) -> None:
    """A sweep's runtimes: each must run somewhere in it (devices x dtypes), with its packages."""
    for runtime in runtimes:
        if not any(runtime_applies(runtime, device, dtype) for device in devices for dtype in dtypes):
            check_encoder_runtime(runtime, devices[0], dtypes[0])  # raises, saying why
        check_encoder_runtime(runtime, "cpu", "fp32")  # the packages


def cpu_precision_warning(dtype: str) -> str | None:
    """Why `dtype` will be slow on this CPU, or None: without AVX512-BF16 or AMX, bf16 matmuls are
    emulated (3x slower than fp32 on an AVX-512 Xeon without them, measured); without VNNI,
    int8 loses most of its lead."""
    flags = accelerators.cpu_flags()
    if dtype == "bf16" and flags and not accelerators.NATIVE_BF16_FLAGS & flags:
        return ("--dtype bf16: this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag): bf16 is emulated "
                "and slower than fp32 here; int8 or fp32 is faster")
    if dtype == "int8" and int8_matmul_problem():
        return f"--dtype int8: {int8_matmul_problem()}: transcripts will be wrong; use fp32 or bf16 here"
    if dtype == "int8" and flags and not {"avx512_vnni", "avx_vnni", "amx_int8"} & flags:
        return "--dtype int8: this CPU has no VNNI (avx512_vnni/avx_vnni): int8 gains little over fp32 here"
    return None


@functools.lru_cache(maxsize=1)
def int8_matmul_problem() -> str | None:
    """Why the int8 encoder's matmul (torch._int_mm) cannot be trusted here, or None. torch 2.4's
    CPU kernel gives wrong int32 sums on AVX2-only CPUs (off by up to 60,000 on rows of 96,
    measured on an AMD EPYC without AVX-512; torch 2.13 is exact there): checked once on a small
    product against the exact one."""
    import torch

    generator = torch.Generator().manual_seed(0)
    left = torch.randint(-127, 128, (17, 96), dtype=torch.int8, generator=generator)
    right = torch.randint(-127, 128, (96, 40), dtype=torch.int8, generator=generator)
    if torch.equal(torch._int_mm(left, right).long(), left.long() @ right.long()):
        return None
    return (f"torch {torch.__version__}'s int8 matmul (torch._int_mm) gives wrong sums on this CPU "
            f"({torch.backends.cpu.get_cpu_capability()})")


def autocast(device: str, dtype: str = "fp32"):
    """A context that runs the model at `dtype` on `device` (nothing changes for fp32)."""
    if check_dtype(dtype) in ("fp32", "int8"):  # int8: the quantized layers take fp32 activations
        return contextlib.nullcontext()
    import torch

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype)


def fp32_features(preprocessor, device: str):
    """Inside the block, `preprocessor` runs with autocast off, whatever surrounds it."""
    import torch

    def autocast_off(original):
        def forward(*args, **kwargs):
            with torch.autocast(device_type=device.split(":")[0], enabled=False):
                return original(*args, **kwargs)
        return forward

    return wrapped_forward(preprocessor, autocast_off)
