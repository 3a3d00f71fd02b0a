"""The int8 encoder for the CPU: a copy of the encoder whose Linear layers, and the pointwise
(kernel 1) convolutions of its conformer convolution modules, which are Linear layers over
channels, are dynamically quantized: int8 weights with one scale per output channel, activations
quantized per call, run by fbgemm's VNNI kernels. The other layers (depthwise and subsampling
convolutions, norms) and the model's tensors are shared with the fp32 encoder."""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from .layouts import pointwise_as_linear


def quantized_encoder(encoder):
    """Each Linear layer and pointwise convolution replaced by its dynamically quantized form
    (what torch's quantize_dynamic does for Linear, with per-channel weights), converted on as many
    threads as torch uses: quantizing and packing 600M weights is otherwise seconds of one core."""
    memo = {id(t): t for t in list(encoder.parameters()) + list(encoder.buffers())}
    structure = copy.deepcopy(encoder, memo).eval()  # new modules, the model's tensors
    # Its pointwise convolutions become Linear layers, quantized below. The other layouts of
    # layouts.py gained int8 nothing (measured: 0.266 vs 0.261 s), so its arithmetic stays as measured.
    pointwise_as_linear(structure)
    targets = [(parent, name, child) for parent in structure.modules()
               for name, child in parent.named_children() if type(child) is torch.nn.Linear]
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        converted = list(pool.map(_quantized_linear, [child for _, _, child in targets]))
    for (parent, name, _), layer in zip(targets, converted):
        setattr(parent, name, layer)
    return structure


def _quantized_linear(linear):
    """What torch's `quantized.dynamic.Linear.from_float` makes of `linear` (per-channel qconfig),
    without its first packing: it constructs the layer at full size, packing a matrix of zeros,
    before packing the real weights (parakeet's int8 build, 2 threads, side by side: 5.3-7.3 s with
    from_float, 3.1-3.7 s this way; tests/test_precision.py compares the two)."""
    import torch.ao.nn.quantized.dynamic as quantized
    from torch.ao.nn.quantized.modules.utils import _quantize_weight
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU dynamic int8
        # kernels faster than these on x86 (fbgemm, VNNI).
        warnings.simplefilter("ignore")
        observer = per_channel_dynamic_qconfig.weight()
        observer(linear.weight)
        weight = _quantize_weight(linear.weight.detach().float(), observer)
        layer = quantized.Linear(1, 1, dtype=torch.qint8)  # a placeholder's packing, replaced below
    layer.in_features, layer.out_features = linear.in_features, linear.out_features
    layer.set_weight_bias(weight, None if linear.bias is None else linear.bias.detach())
    return layer
