"""Action losses for policies trained by supervised learning on trajectories (behaviour
cloning, the Decision Transformer, the Constrained DT): pure functions over per-step
predictions with a mask, `(head, target, mask, ...) -> LossOutput`.

Every loss averages over the real steps (mask 1) only, so padding a window changes nothing.
The three are named in `ACTION_LOSSES` by the kind of policy head they train.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from rlhfkit.ops.logprobs import masked_mean
from rlhfkit.ops.losses import LossOutput


def _steps(mask: torch.Tensor) -> float:
    n = float(mask.sum().item())
    if n == 0:
        raise ValueError("the action loss got a batch with no real step (the mask is all zero)")
    return n


def action_mse(mean: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
               log_std: torch.Tensor | None = None, entropy_coef: float = 0.0) -> LossOutput:
    """Mean squared error of a deterministic continuous action (Chen et al. 2021, sec. 3).
    mean, target (B, K, A); mask (B, K). The error is averaged over action dimensions, then
    over real steps."""
    assert mean.shape == target.shape and mean.shape[:2] == mask.shape
    n = _steps(mask)
    per_step = ((mean - target) ** 2).mean(-1)  # (B, K)
    loss = masked_mean(per_step, mask)
    return LossOutput(loss, {"action_mse": loss.item()}, count=n)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                 log_std: torch.Tensor | None = None, entropy_coef: float = 0.0) -> LossOutput:
    """Negative log-likelihood of the taken action under a diagonal Gaussian, minus an entropy
    bonus: the Constrained DT's stochastic policy (Liu et al. 2023, sec. 4.2, eq. 4).
    mean, log_std, target (B, K, A); mask (B, K). Log-likelihood and entropy are summed over
    action dimensions, then averaged over real steps."""
    assert log_std is not None and mean.shape == target.shape == log_std.shape and mean.shape[:2] == mask.shape
    n = _steps(mask)
    var = torch.exp(2 * log_std)
    logp = (-0.5 * (target - mean) ** 2 / var - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)  # (B, K)
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)  # (B, K)
    nll = masked_mean(-logp, mask)
    ent = masked_mean(entropy, mask)
    loss = nll - entropy_coef * ent
    return LossOutput(loss, {"action_nll": nll.item(), "entropy": ent.item(),
                             "action_mse": masked_mean(((mean - target) ** 2).mean(-1), mask).item()}, count=n)


def action_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                         log_std: torch.Tensor | None = None, entropy_coef: float = 0.0) -> LossOutput:
    """Cross-entropy of a discrete action, minus an optional entropy bonus.
    logits (B, K, A); target (B, K) long; mask (B, K)."""
    assert logits.shape[:2] == target.shape == mask.shape
    n = _steps(mask)
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, K, A)
    nll = masked_mean(-logp.gather(-1, target.unsqueeze(-1)).squeeze(-1), mask)
    ent = masked_mean(-(logp.exp() * logp).sum(-1), mask)
    acc = masked_mean((logits.argmax(-1) == target).float(), mask)
    loss = nll - entropy_coef * ent
    return LossOutput(loss, {"action_nll": nll.item(), "entropy": ent.item(), "action_acc": acc.item()}, count=n)


ActionLoss = Callable[..., LossOutput]

# policy head -> its loss
ACTION_LOSSES: dict[str, ActionLoss] = {
    "deterministic": action_mse,
    "gaussian": gaussian_nll,
    "categorical": action_cross_entropy,
}
