"""Which kernels the TDT prediction network's LSTM runs on, on the CPU.

Greedy decoding calls the LSTM one token at a time: a batch of one-step sequences. For such a
step torch's CPU LSTM (oneDNN's kernel) prepares its weights anew on every call: 4.3-4.7 ms per
step for parakeet's two 640-wide layers on this 2-core CPU, most of a clip's decoding time. Here a
step is one matmul per layer over the layer's input and hidden weights fused once (1.2 ms; the
weights, 13 MB per layer, are read once per step), then the gates as torch's LSTM cell computes
them. Outputs differ from oneDNN's by float rounding (1e-7), as torch's own two kernels do.

Sequences longer than one step (NeMo decoding a whole transcript at once, training) keep torch's
kernels, except where oneDNN cannot build a bf16 LSTM at all: there they run on torch's native
kernel (`onednn_runs_bf16_lstm`)."""

from __future__ import annotations

import contextlib
import functools

from .forwards import wrapped_forward


@contextlib.contextmanager
def lstm_kernels(model, device: str, dtype: str):
    """Inside the block the model's LSTMs run one-step calls as fused matmuls and longer ones on
    the kernel that works at `dtype`, on the CPU (elsewhere nothing changes). bf16 steps run on
    bf16 copies of the weights, made once, as autocast would cast them on every call."""
    if device.split(":")[0] != "cpu":
        yield
        return
    import torch

    low = torch.bfloat16 if dtype == "bf16" else None
    onednn = low is None or onednn_runs_bf16_lstm()
    with contextlib.ExitStack() as stack:
        for module in model.modules():
            if isinstance(module, torch.nn.LSTM):
                stack.enter_context(wrapped_forward(module, functools.partial(_cpu_forward, module, low, onednn)))
        yield


def _cpu_forward(lstm, low, onednn: bool, original):
    import torch

    def forward(input, hx=None):
        if _one_step(lstm, input):
            return _step(lstm, input, hx, low)
        if onednn:
            return original(input, hx)
        # Not mkldnn.flags(): from torch 2.13 on it also sets oneDNN's TF32 and warns each time.
        enabled, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
        try:
            return original(input, hx)
        finally:
            torch.backends.mkldnn.enabled = enabled
    return forward


def _one_step(lstm, input) -> bool:
    import torch

    return (not torch.is_grad_enabled() and not lstm.training and isinstance(input, torch.Tensor)
            and input.dim() == 3 and input.shape[1 if lstm.batch_first else 0] == 1
            and input.dtype == torch.float32 and lstm.bias and not lstm.bidirectional and lstm.proj_size == 0)


def _step(lstm, input, hx, low):
    """One time step of a unidirectional LSTM in eval mode (dropout between layers is a training
    feature), returning what `lstm(input, hx)` returns."""
    import torch

    seq_dim = 1 if lstm.batch_first else 0
    x = input.squeeze(seq_dim)
    if hx is None:
        zeros = x.new_zeros(lstm.num_layers, x.shape[0], lstm.hidden_size)
        hx = (zeros, zeros)
    hidden, cell = hx
    hiddens, cells = [], []
    for layer, (weight, bias) in enumerate(_fused_weights(lstm, low)):
        rows = torch.cat([x, hidden[layer].to(x.dtype)], dim=1)
        gates = torch.addmm(bias, rows if low is None else rows.to(low), weight).float()
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
        c = torch.sigmoid(forget_gate) * cell[layer].float() + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
        x = torch.sigmoid(out_gate) * torch.tanh(c)
        if low is not None:
            x, c = x.to(low), c.to(low)
        hiddens.append(x)
        cells.append(c)
    return x.unsqueeze(seq_dim), (torch.stack(hiddens), torch.stack(cells))


def _fused_weights(lstm, low) -> list:
    """Per layer ([input weights | hidden weights] transposed, both biases summed), at `low` or
    fp32, built once and rebuilt only when the LSTM's parameters change."""
    import torch

    # tensors made under inference_mode have no version counter (and cannot be changed in place)
    key = (low, tuple((p.data_ptr(), 0 if p.is_inference() else p._version) for p in lstm._flat_weights))
    kept = vars(lstm).get("_fused_step_weights")
    if kept is not None and kept[0] == key:
        return kept[1]
    fused = []
    for layer in range(lstm.num_layers):
        weights = [getattr(lstm, f"{kind}_l{layer}").detach() for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        weight = torch.cat(weights[:2], dim=1).t().contiguous()
        bias = weights[2] + weights[3]
        fused.append((weight, bias) if low is None else (weight.to(low), bias.to(low)))
    vars(lstm)["_fused_step_weights"] = (key, fused)
    return fused


@functools.lru_cache(maxsize=None)
def onednn_runs_bf16_lstm() -> bool:
    """Whether a tiny LSTM runs under CPU bf16 autocast as the model's would (oneDNN's kernels)."""
    import torch

    lstm = torch.nn.LSTM(8, 8)
    try:
        with torch.inference_mode(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 8))
    except RuntimeError:
        return False
    return True
