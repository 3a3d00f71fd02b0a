"""The same arithmetic in the layouts the CPU's kernels run fastest, for the encoder copy built
for bf16/fp16 (common/engine/encoders.py); the int8 copy (common/engine/int8.py) takes the
pointwise convolutions as Linear layers, which it quantizes. The fp32 encoder is NeMo's own and
stays untouched, so that fp32 transcripts stay those of model.transcribe().

Measured on the full-size encoder (7.24 s clip, bf16, 2 threads, interleaved; docs/benchmark.md "Against
the CPU peers"), each change on top of the one before: 0.347 s as cast, 0.303 s with
- pointwise (kernel 1) convolutions as Linear layers over channels (oneDNN's 1x1 convolution over
  [1, C, 1, T] is slower than the GEMM of the same weights), 0.258 s with
- the relative position embedding given the strides of its shape: NeMo slices it out of a buffer,
  which leaves its size-1 batch dimension with the whole buffer's stride, so torch.matmul cannot
  fold it into one GEMM and copies the projection's expanded weight in every layer, 0.234 s with
- the subsampling's Conv2d weights in channels_last (its own part 38 -> 10 ms)."""

from __future__ import annotations

import torch


class PointwiseLinear(torch.nn.Module):
    """A pointwise Conv1d as a Linear layer: [B, C, T] in and out."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        # contiguous: a transposed [B, T, C] cannot be folded into one GEMM by torch.matmul, which
        # would copy the expanded weight instead (3 ms per layer, more than this activation's copy)
        return self.linear(x.transpose(1, 2).contiguous()).transpose(1, 2)


def pointwise(module) -> bool:
    """A Conv1d that is a Linear layer over channels at every time step."""
    return (type(module) is torch.nn.Conv1d and module.kernel_size == (1,) and module.stride == (1,)
            and module.padding in ((0,), "valid") and module.dilation == (1,) and module.groups == 1
            and module.padding_mode == "zeros")


def linear_of(conv) -> torch.nn.Linear:
    """The Linear layer of a pointwise convolution, on the convolution's own tensors."""
    # skip_init: no random initialisation (it would draw from torch's global generator)
    linear = torch.nn.utils.skip_init(torch.nn.Linear, conv.in_channels, conv.out_channels,
                                      bias=conv.bias is not None)
    linear.weight = torch.nn.Parameter(conv.weight.detach()[:, :, 0], requires_grad=False)
    if conv.bias is not None:
        linear.bias = torch.nn.Parameter(conv.bias.detach(), requires_grad=False)
    return linear


def pointwise_as_linear(encoder) -> None:
    """Each pointwise convolution of `encoder` (a copy: its modules are replaced) as a Linear layer."""
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if pointwise(child):
                setattr(parent, name, PointwiseLinear(linear_of(child)))


def channels_last_subsampling(encoder) -> None:
    """The subsampling's Conv2d weights in channels_last, as new tensors: the copy shares its
    other tensors with the model, whose own layout must not change."""
    for module in encoder.pre_encode.modules():
        if type(module) is torch.nn.Conv2d:
            # empty_like: channels_last strides even where a size-1 dimension (one input channel,
            # depthwise) makes the weight count as contiguous either way, which oneDNN reads as NCHW
            weight = torch.empty_like(module.weight, memory_format=torch.channels_last).copy_(module.weight.detach())
            module.weight = torch.nn.Parameter(weight, requires_grad=False)


def canonical_position_embedding(encoder) -> None:
    """The relative position embedding handed to the layers with the strides of its shape."""
    forward = encoder.pos_enc.forward

    def canonical(*args, **kwargs):
        x, pos_emb = forward(*args, **kwargs)
        if pos_emb is not None:
            pos_emb = pos_emb.clone(memory_format=torch.contiguous_format)
        return x, pos_emb

    encoder.pos_enc.forward = canonical


def fast_layouts(encoder) -> None:
    """All of the above, on a copy of the encoder."""
    pointwise_as_linear(encoder)
    channels_last_subsampling(encoder)
    canonical_position_embedding(encoder)
