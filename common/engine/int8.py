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


class PointwiseLinear(torch.nn.Module):
    """A pointwise Conv1d as a (quantized) Linear layer: [B, C, T] in and out."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def quantized_encoder(encoder):
    """Each Linear layer and pointwise convolution replaced by its dynamically quantized form
    (what torch's quantize_dynamic does for Linear, with per-channel weights), converted on as many
    threads as torch uses: quantizing and packing 600M weights is otherwise seconds of one core."""
    memo = {id(t): t for t in list(encoder.parameters()) + list(encoder.buffers())}
    structure = copy.deepcopy(encoder, memo).eval()  # new modules, the model's tensors
    targets = [(parent, name, child) for parent in structure.modules()
               for name, child in parent.named_children() if type(child) is torch.nn.Linear or pointwise(child)]
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        converted = list(pool.map(_quantized, [child for _, _, child in targets]))
    for (parent, name, _), layer in zip(targets, converted):
        setattr(parent, name, layer)
    return structure


def pointwise(module) -> bool:
    """A Conv1d that is a Linear layer over channels at every time step."""
    return (type(module) is torch.nn.Conv1d and module.kernel_size == (1,) and module.stride == (1,)
            and module.padding in ((0,), "valid") and module.dilation == (1,) and module.groups == 1
            and module.padding_mode == "zeros")


def _quantized(layer):
    if type(layer) is torch.nn.Linear:
        return _quantized_linear(layer)
    # skip_init: no random initialisation (it would draw from torch's global generator)
    linear = torch.nn.utils.skip_init(torch.nn.Linear, layer.in_channels, layer.out_channels,
                                      bias=layer.bias is not None)
    linear.weight = torch.nn.Parameter(layer.weight.detach()[:, :, 0], requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.detach(), requires_grad=False)
    return PointwiseLinear(_quantized_linear(linear))


def _quantized_linear(linear):
    import torch.ao.nn.quantized.dynamic as quantized
    from torch.ao.quantization import per_channel_dynamic_qconfig

    linear.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU dynamic int8
        # kernels faster than these on x86 (fbgemm, VNNI).
        warnings.simplefilter("ignore")
        return quantized.Linear.from_float(linear)
