"""Per-token log-probabilities, masked reductions and entropy."""

from __future__ import annotations

import math
from typing import Literal

import torch

Reduction = Literal["mean", "sum", "none"]


def response_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[b, t] | context) for each position.

    `logits` (B, T, V) must already be aligned with `ids` (B, T), i.e. `logits[:, t]`
    is the distribution that produced `ids[:, t]`. Gathering the chosen logit and
    subtracting the log-partition avoids materializing a (B, T, V) log-softmax.
    """
    assert logits.shape[:-1] == ids.shape, f"logits {tuple(logits.shape)} vs ids {tuple(ids.shape)}"
    logits = logits.float()
    chosen = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return chosen - torch.logsumexp(logits, dim=-1)  # (B, T)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    assert x.shape == mask.shape, f"{tuple(x.shape)} vs mask {tuple(mask.shape)}"
    m = mask.to(x.dtype)
    return (x * m).sum() if dim is None else (x * m).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where `mask` is 1 (an all-zero mask gives 0, not NaN)."""
    m = mask.to(x.dtype)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.to(x.dtype).sum()
        var = var * n / (n - 1).clamp(min=1.0)
    return var


def reduce(x: torch.Tensor, mask: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return masked_mean(x, mask)
    if reduction == "sum":
        return masked_sum(x, mask)
    return x * mask.to(x.dtype)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical at each position: (B, T, V) -> (B, T)."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    # a token filtered to -inf (top-k/top-p) has p = 0 and adds 0, not 0 * -inf = NaN
    return -(logp.exp() * logp.clamp(min=torch.finfo(logp.dtype).min)).sum(-1)


def mixture_logprobs(member_logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of an ensemble's predictive distribution, the mean of its members'
    softmaxes: log (1/M) sum_m softmax(z_m). (M, B, A) logits -> (B, A)."""
    logp = torch.log_softmax(member_logits, dim=-1)  # (M, B, A)
    return torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])  # (B, A)
