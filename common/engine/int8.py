"""The int8 encoder for the CPU: a copy of the encoder whose Linear layers, and the pointwise
(kernel 1) convolutions of its conformer convolution modules, which are Linear layers over
channels, run in int8 (`Int8Linear`): weights quantized once, one scale per output channel;
activations quantized per row (per frame) at each call; the products summed in int32 by
`torch._int_mm` (oneDNN's AMX or VNNI kernels). The other layers (depthwise and subsampling
convolutions, norms, attention scores) and the model's other tensors are shared with fp32.

Why not torch's dynamic quantization (`torch.ao`, fbgemm), which this replaced: its weights must
be packed for fbgemm in every process (quantizing and packing parakeet's 608M weights took 3-4 s
of a one-clip run), its packed form cannot be saved, and its quantized tensors are deprecated.
Plain int8 weights are saved once per model file (`cached_int8_weights`) and memory-mapped by
later runs. Per-row activation scales also make each frame's result independent of the rest of
the batch, and are closer to fp32 than a scale per tensor (parakeet's encoder, random weights:
1.6-1.7% relative distance against 2.5-2.7%). Measured on the full-size encoder, 7.24 s clip,
2 threads: 0.231 s against fbgemm's 0.275 with AMX; with oneDNN capped at AVX512-VNNI (the
CPUs without AMX) 0.291 s against 0.235.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .layouts import pointwise_as_linear

CACHE_VERSION = 1  # bump when the quantization changes: older cached weights are then ignored


class Int8Linear(torch.nn.Module):
    """y = x W^T + b, with W in int8 (`weight`, [out, in], scaled per output channel by `scale`)
    and x quantized symmetrically per row at each call; int32 sums, then scaled back to fp32."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor]):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        row_scale = rows.abs().amax(1, keepdim=True).clamp_(min=1e-12).div_(127)
        quantized = rows.div(row_scale).round_().to(torch.int8)
        # In place from the int32 sums on: each pass over the output is a copy otherwise.
        out = torch._int_mm(quantized, self.weight.t()).float().mul_(row_scale).mul_(self.scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, fp32 scale per output channel): symmetric, the largest magnitude of each
    row at 127."""
    weight = weight.detach().float()
    scale = weight.abs().amax(1).clamp_(min=1e-12).div_(127)
    return weight.div(scale[:, None]).round_().to(torch.int8), scale


def quantized_encoder(encoder, weights: Optional[dict] = None):
    """A copy of `encoder` with each Linear layer and pointwise convolution an `Int8Linear`, its
    int8 weights taken from `weights` (`int8_weights` of an earlier copy) where they fit, else
    quantized now."""
    memo = {id(t): t for t in list(encoder.parameters()) + list(encoder.buffers())}
    structure = copy.deepcopy(encoder, memo).eval()  # new modules, the model's tensors
    # Its pointwise convolutions become Linear layers, quantized below. The other layouts of
    # layouts.py gained int8 nothing (measured: 0.266 vs 0.261 s), so its arithmetic stays as measured.
    pointwise_as_linear(structure)
    layers = [(name, module) for name, module in structure.named_modules() if type(module) is torch.nn.Linear]
    if weights is None or set(weights) != {name for name, _ in layers} or any(
            weights[name][0].shape != linear.weight.shape for name, linear in layers):
        weights = {name: quantize_weight(linear.weight) for name, linear in layers}
    for name, linear in layers:
        parent, _, attribute = name.rpartition(".")
        bias = None if linear.bias is None else linear.bias.detach()
        setattr(structure.get_submodule(parent), attribute, Int8Linear(*weights[name], bias))
    return structure


def int8_weights(structure) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The int8 weight and scale of each `Int8Linear` of a quantized copy, by qualified name."""
    return {name: (module.weight, module.scale) for name, module in structure.named_modules()
            if type(module) is Int8Linear}


def cached_quantized_encoder(loaded):
    """`quantized_encoder` of the loaded model's encoder, its int8 weights read from the cache
    when this model file was quantized before (by any process), else quantized and saved there."""
    from filelock import FileLock

    from .caches import cache_folder, derived_key

    root = cache_folder("int8-encoders")
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{derived_key(loaded, f'int8 {CACHE_VERSION} torch {torch.__version__}')}.pt"
    # One process quantizes; the others (torchrun's ranks) wait for its file instead of each
    # holding another 600 MB of int8 weights while quantizing.
    with FileLock(str(root / f".{path.name}.lock")):
        saved = _read_weights(path)
        structure = quantized_encoder(loaded.model.encoder, saved)
        weights = int8_weights(structure)
        if saved is None or any(weights[name][0] is not saved.get(name, (None,))[0] for name in weights):
            _publish_weights(weights, path)
    return structure


def _read_weights(path: Path) -> Optional[dict]:
    """The saved weights, memory-mapped (pages are read as layers first run), or None."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # unreadable (another torch's format, a damaged disk): quantize again
        return None


def _publish_weights(weights: dict, path: Path) -> None:
    """Written under a temporary name, then renamed into place: never a half-written file."""
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        torch.save(weights, scratch)
        os.replace(scratch, path)
    except OSError:  # a read-only or full cache: this run still has its weights
        pass
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
