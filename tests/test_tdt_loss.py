"""Our vectorized TDT loss against a slow, literal implementation of the TDT forward recursion."""

from __future__ import annotations

import pytest
import torch

from tools.tdt_loss import tdt_log_likelihood, tdt_loss


def reference_log_likelihood(logits, targets, frames, labels, durations, blank, sigma):
    """One utterance, cell by cell, straight from the recursion's definition."""
    n_tokens = logits.shape[-1] - len(durations)
    token_lp = torch.log_softmax(logits[..., :n_tokens].double(), dim=-1) - sigma
    duration_lp = torch.log_softmax(logits[..., n_tokens:].double(), dim=-1)
    alpha = {(0, 0): torch.zeros((), dtype=torch.float64)}
    for t in range(frames):
        for u in range(labels + 1):
            if (t, u) == (0, 0):
                continue
            terms = []
            for k, d in enumerate(durations):
                if t - d < 0:
                    continue
                if d > 0 and (t - d, u) in alpha:
                    terms.append(alpha[t - d, u] + token_lp[t - d, u, blank] + duration_lp[t - d, u, k])
                if u > 0 and (t - d, u - 1) in alpha:
                    label = targets[u - 1]
                    terms.append(alpha[t - d, u - 1] + token_lp[t - d, u - 1, label] + duration_lp[t - d, u - 1, k])
            if terms:
                alpha[t, u] = torch.logsumexp(torch.stack(terms), dim=0)
    finals = [alpha[frames - d, labels] + token_lp[frames - d, labels, blank] + duration_lp[frames - d, labels, k]
              for k, d in enumerate(durations) if d > 0 and (frames - d, labels) in alpha]
    return torch.logsumexp(torch.stack(finals), dim=0)


@pytest.mark.parametrize("durations, sigma", [([0, 1, 2, 3, 4], 0.02), ([1, 2], 0.0), ([0, 1, 2], 0.05)])
def test_matches_the_reference_in_value_and_gradient(durations, sigma):
    torch.manual_seed(0)
    vocab, blank = 6, 6  # tokens 0..5, blank last
    frames, labels = torch.tensor([7, 5, 6]), torch.tensor([3, 1, 2])
    logits = torch.randn(3, 7, 4, vocab + 1 + len(durations), dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (3, 3))

    ours = tdt_log_likelihood(logits, targets, frames, labels, durations, blank, sigma)
    (ours_grad,) = torch.autograd.grad(ours.sum(), logits)
    expected = torch.stack([
        reference_log_likelihood(logits[b, :frames[b], :labels[b] + 1], targets[b], int(frames[b]), int(labels[b]),
                                 durations, blank, sigma)
        for b in range(3)])
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    assert torch.allclose(ours, expected, atol=1e-9), (ours, expected)
    assert torch.allclose(ours_grad, expected_grad, atol=1e-9)
    assert (ours < 0).all()


def test_loss_falls_when_training_a_tiny_joint():
    torch.manual_seed(1)
    durations, blank = [0, 1, 2], 4
    logits = torch.zeros(2, 6, 3, 5 + len(durations), requires_grad=True)
    targets, frames, labels = torch.tensor([[1, 2], [3, 0]]), torch.tensor([6, 5]), torch.tensor([2, 1])
    optimizer = torch.optim.SGD([logits], lr=0.5)
    losses = []
    for _ in range(20):
        loss = tdt_loss(logits, targets, frames, labels, durations, blank)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
