"""The encoder at the run's precision, built once per model and kept with it.

fp32 is the model's own encoder. For bf16/fp16 the model still runs under autocast, but the
weights autocast casts on every call (those of Linear and convolution layers) are cast once, in
a copy of the encoder that shares every other tensor with the model, so that 600M weights are not
converted per call; the copy's layers are laid out for the CPU's kernels (common/engine/layouts.py),
which changes the order of the sums in its GEMMs, not the precision: its distance to fp32 is
autocast's (tests/test_precision.py).
int8 (CPU only) is a copy with its Linear layers in int8 (common/engine/int8.py), their weights
quantized once per model file and cached on disk.
Both copies cost memory (bf16: half the encoder's weights; int8: a quarter) and a one-time build."""

from __future__ import annotations

import contextlib
import copy
from typing import Optional

# The layers whose weights autocast runs in low precision (torch's autocast op lists: linear,
# conv1d/conv2d): casting exactly these once changes no result.
_LOW_PRECISION_LAYERS = ("Linear", "Conv1d", "Conv2d")
# Where those lists are torch's own. On an npu autocast casts what torch_npu registers, which
# cannot be checked without the hardware, so there the weights stay fp32 and autocast casts them.
CAST_ONCE_DEVICES = ("cpu", "cuda")


@contextlib.contextmanager
def encoder_at(loaded, dtype: str, attention: Optional[str] = None, runtime: str = "torch"):
    """Inside the block `loaded.model.encoder` is the encoder for `dtype` and `runtime`; the
    model's own after. `attention` names the attention the encoder has now (long audio changes
    it), so a copy built for the other attention is not reused; ONNX Runtime's export has full
    attention only, so long audio keeps torch."""
    if runtime == "onnxruntime" and attention is None:
        from .onnx_encoder import onnx_encoder

        with _encoder_swapped(loaded.model, onnx_encoder(loaded)):
            yield
        return
    if dtype == "fp32" or (dtype in ("bf16", "fp16") and loaded.device.split(":")[0] not in CAST_ONCE_DEVICES):
        yield
        return
    with _encoder_swapped(loaded.model, _encoder_copy(loaded, dtype, attention)):
        yield


@contextlib.contextmanager
def _encoder_swapped(model, encoder):
    own = model.encoder
    model.encoder = encoder
    try:
        yield
    finally:
        model.encoder = own


def _encoder_copy(loaded, dtype: str, attention: Optional[str]):
    """The kept copy for `dtype`, rebuilt when the attention changed (one copy per dtype, so long
    and short files in turns rebuild; batches sorted longest first switch once)."""
    kept = loaded.encoders.get(dtype)
    if kept is not None and kept[0] == attention:
        return kept[1]
    loaded.encoders.pop(dtype, None)  # free the old copy before building the new one
    if dtype == "int8":
        from .int8 import cached_quantized_encoder

        built = cached_quantized_encoder(loaded)
    else:
        built = build_encoder(loaded.model.encoder, dtype)
    loaded.encoders[dtype] = (attention, built)
    return built


def build_encoder(encoder, dtype: str):
    """A copy of `encoder` with its weights cast to `dtype` (bf16/fp16), sharing the tensors it
    does not change."""
    import torch

    from .layouts import fast_layouts

    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    memo = {id(t): t for t in list(encoder.parameters()) + list(encoder.buffers())}
    for module in encoder.modules():
        if type(module).__name__ in _LOW_PRECISION_LAYERS:
            for name, tensor in module.named_parameters(recurse=False):
                memo[id(tensor)] = torch.nn.Parameter(tensor.detach().to(low), requires_grad=False)
    structure = copy.deepcopy(encoder, memo).eval()
    fast_layouts(structure)
    return structure
