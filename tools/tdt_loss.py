"""The TDT (token-and-duration transducer) loss in PyTorch, for training on the CPU.

NeMo's `tdt` loss runs only on CUDA. This one is vectorized over the batch and the label
positions and loops over frames only. Lattice: alpha(t, u) is the log-probability of having
emitted the first u labels and standing at frame t. Arcs:
  blank of duration d > 0:   (t - d, u)     -> (t, u)
  label y_u of duration d >= 0: (t - d, u - 1) -> (t, u)   (d = 0 stays in the frame)
Each arc costs the token log-probability (log-softmax over vocabulary + blank, minus `sigma`,
the TDT paper's logit under-normalization) plus the duration log-probability (log-softmax over
the durations). The path ends with a blank that lands exactly on frame T:
  log P = logsumexp over d > 0 of alpha(T - d, U) + blank(T - d, U) + duration(T - d, U, d).
"""

from __future__ import annotations

import torch

# Unreachable lattice cells: a large negative number instead of -inf keeps gradients finite.
UNREACHABLE = -1e4


def tdt_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                       target_lengths: torch.Tensor, durations: list[int], blank: int,
                       sigma: float = 0.0) -> torch.Tensor:
    """log P(targets | logits) per utterance.

    logits: (B, T, U + 1, V + 1 + len(durations)) raw joint outputs, tokens first (blank among
    them at index `blank`), then one logit per duration; fp32 or fp64, since the normalizers
    are summed in the logits' dtype (bf16's are off by up to 0.07 nats). targets: (B, U) label ids.
    """
    n_tokens = logits.shape[-1] - len(durations)
    batch, frames, positions = logits.shape[:3]
    index = targets.long().clamp(min=0)[:, None, :, None].expand(batch, frames, positions - 1, 1)
    label_lp, blank_lp, duration_lp = CellLogProbs.apply(logits, index, blank, n_tokens)
    # Only the small (B, T, U + 1) lattice terms are float64, where long sums of log-probabilities
    # need the precision.
    label_lp, blank_lp, duration_lp = label_lp.double() - sigma, blank_lp.double() - sigma, duration_lp.double()
    # Frame by frame as views of one unbind: slicing per frame would cost a whole (B, T, U + 1)
    # gradient buffer per slice in the backward pass.
    label_at, blank_at = label_lp.unbind(1), blank_lp.unbind(1)
    duration_at = [per_duration.unbind(1) for per_duration in duration_lp.unbind(-1)]

    alphas = [None] * frames  # alphas[t]: (B, U + 1)
    for t in range(frames):
        incoming = torch.full((batch, positions), UNREACHABLE, dtype=torch.float64, device=logits.device)
        if t == 0:
            incoming[:, 0] = 0.0
        for k, d in enumerate(durations):
            if d == 0 or t - d < 0:
                continue
            source = alphas[t - d]
            via_blank = source + blank_at[t - d] + duration_at[k][t - d]
            via_label = source[:, :-1] + label_at[t - d] + duration_at[k][t - d][:, :-1]
            incoming = torch.logaddexp(incoming, via_blank)
            incoming = torch.cat([incoming[:, :1], torch.logaddexp(incoming[:, 1:], via_label)], dim=1)
        alphas[t] = _within_frame(incoming, label_at[t], duration_at[durations.index(0)][t][:, :-1]
                                  if 0 in durations else None)
    alpha = torch.stack(alphas, dim=1)  # (B, T, U + 1)

    rows = torch.arange(batch, device=logits.device)
    finals = []
    for k, d in enumerate(durations):
        if d == 0:
            continue
        t = logit_lengths.long() - d
        valid = t >= 0
        t = t.clamp(min=0)
        u = target_lengths.long()
        term = alpha[rows, t, u] + blank_lp[rows, t, u] + duration_lp[rows, t, u, k]
        finals.append(torch.where(valid, term, torch.full_like(term, UNREACHABLE)))
    return torch.logsumexp(torch.stack(finals), dim=0)


class CellLogProbs(torch.autograd.Function):
    """What the lattice reads of the joint's outputs: the next label's log-probability (B, T, U)
    and the blank's (B, T, U + 1), both log-softmax over the tokens, and the durations'
    log-softmax (B, T, U + 1, n_durations).

    A whole log-softmax over the vocabulary, gathered and differentiated by autograd, writes
    several (B, T, U + 1, V) tensors per step; the gradient needs one:
    d/dx_v = g_v - softmax_v * sum(g), g nonzero only at the label and the blank.
    """

    @staticmethod
    def forward(ctx, logits, index, blank: int, n_tokens: int):
        tokens = logits[..., :n_tokens]
        normalizer = torch.logsumexp(tokens, dim=-1)  # (B, T, U + 1)
        label_lp = tokens[:, :, :-1].gather(-1, index).squeeze(-1) - normalizer[:, :, :-1]
        blank_lp = tokens[..., blank] - normalizer
        duration_lp = torch.log_softmax(logits[..., n_tokens:], dim=-1)
        ctx.save_for_backward(logits, normalizer, index, duration_lp)
        ctx.blank, ctx.n_tokens = blank, n_tokens
        return label_lp, blank_lp, duration_lp

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, label_grad, blank_grad, duration_grad):
        # autograd passes zeros, never None, for outputs the loss did not use.
        logits, normalizer, index, duration_lp = ctx.saved_tensors
        blank, n_tokens = ctx.blank, ctx.n_tokens
        per_cell = blank_grad.clone()
        per_cell[:, :, :-1] += label_grad
        grad = torch.empty_like(logits)
        tokens = grad[..., :n_tokens]
        torch.sub(logits[..., :n_tokens], normalizer[..., None], out=tokens)
        tokens.exp_().mul_(-per_cell[..., None])
        tokens[..., blank] += blank_grad
        tokens[:, :, :-1].scatter_add_(-1, index, label_grad[..., None])
        grad[..., n_tokens:] = duration_grad - duration_lp.exp() * duration_grad.sum(-1, keepdim=True)
        return grad, None, None, None


def _within_frame(incoming: torch.Tensor, label_lp_t: torch.Tensor, zero_duration_lp_t) -> torch.Tensor:
    """Close the frame under duration-0 label arcs: x[u] = logaddexp(a[u], x[u-1] + c[u-1]),
    solved for all u at once as x = S + logcumsumexp(a - S), S the prefix sums of c."""
    if zero_duration_lp_t is None:
        return incoming
    step = label_lp_t + zero_duration_lp_t  # c[u]: (B, U)
    prefix = torch.cat([torch.zeros_like(step[:, :1]), step.cumsum(dim=1)], dim=1)  # S[u]: (B, U + 1)
    return prefix + torch.logcumsumexp(incoming - prefix, dim=1)


def tdt_loss(logits, targets, logit_lengths, target_lengths, durations, blank, sigma: float = 0.0):
    """Mean over the batch of -log P (NeMo's 'mean_batch' reduction)."""
    return -tdt_log_likelihood(logits, targets, logit_lengths, target_lengths, durations, blank, sigma).mean()
