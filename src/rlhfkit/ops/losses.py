"""Losses: pure functions `(tensors, hyperparameters) -> LossOutput(loss, metrics)`.

Bradley-Terry is the one preference likelihood of the toolkit: the LM reward
model, DPO, the control reward ensemble and item aggregation all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rlhfkit.ops.logprobs import Reduction, masked_mean, reduce


@dataclass(frozen=True)
class LossOutput:
    """A scalar loss to backpropagate and detached metrics to log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    # What `loss` is a mean over (tokens, summed pair weights) when that is not the examples:
    # under data parallelism each process's shard is weighted by it (`train.supervised`).
    count: float | None = None


def sft_nll(logprobs: torch.Tensor, mask: torch.Tensor, reduction: Reduction = "mean") -> LossOutput:
    """Negative log-likelihood of the target tokens where `mask` is 1 (response tokens for SFT,
    every token for pretraining). `logprobs` (B, T) from `response_logprobs`."""
    assert logprobs.shape == mask.shape
    nll = reduce(-logprobs, mask, reduction)
    tokens = mask.sum().item()
    mean_nll = masked_mean(-logprobs.detach(), mask).item()
    return LossOutput(nll, {"nll": mean_nll, "ppl": float(torch.tensor(mean_nll).exp()), "tokens": tokens},
                      count=float(tokens) if reduction == "mean" else None)


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, target: torch.Tensor | float = 1.0,
                  weights: torch.Tensor | None = None, noise: float = 0.0) -> LossOutput:
    """Cross-entropy of the Bradley-Terry model P(chosen > rejected) = sigmoid(r_c - r_r).

    loss = -[mu log P + (1 - mu) log(1 - P)], mu = 1 for a clear preference and 0.5
    for a tie (the lecture's cross-entropy form; Christiano et al. 2017, eq. 1).
    `noise` = epsilon mixes in a labeler who answers at random with probability
    epsilon: P = (1 - eps) sigmoid(d) + eps / 2 (Christiano et al. 2017, sec. 2.2.3).
    `weights` (e.g. 1/C(K,2) per pair of a K-way ranking, InstructGPT sec. 3.5)
    make the loss a weighted mean. With mu = 1 and eps = 0: loss = log(1 + e^-(r_c - r_r)).
    """
    assert chosen.shape == rejected.shape, f"{tuple(chosen.shape)} vs {tuple(rejected.shape)}"
    diff = chosen.float() - rejected.float()
    mu = torch.as_tensor(target, dtype=diff.dtype, device=diff.device).expand_as(diff)
    if noise > 0.0:
        p = (1.0 - noise) * torch.sigmoid(diff) + noise / 2.0
        per_pair = -(mu * torch.log(p) + (1.0 - mu) * torch.log1p(-p))
    else:
        per_pair = -(mu * F.logsigmoid(diff) + (1.0 - mu) * F.logsigmoid(-diff))
    loss, count = weighted_mean(per_pair, weights)
    return LossOutput(loss, pair_metrics(chosen, rejected, mu), count=count)


def weighted_mean(x: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, float | None]:
    """Mean of per-pair values (B,), weighted when `weights` is given; also the weights' sum
    (the `count` a weighted loss reports; None for a plain mean)."""
    if weights is None:
        return x.mean(), None
    w = weights.to(x.dtype)
    return (x * w).sum() / w.sum().clamp(min=1e-12), w.sum().item()


@torch.no_grad()
def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor, target: torch.Tensor | float = 1.0
                 ) -> dict[str, float]:
    """Accuracy over the decided pairs (target != 1/2; a tie has no right answer), mean margin
    and mean scores of scores (B,) each: what every pairwise loss reports."""
    diff = chosen.float() - rejected.float()  # (B,)
    mu = torch.as_tensor(target, dtype=diff.dtype, device=diff.device).expand_as(diff)
    decided = mu != 0.5
    correct = ((diff > 0) == (mu > 0.5)) & decided
    return {
        "accuracy": (correct.sum() / decided.sum().clamp(min=1)).item(),
        "margin": diff.mean().item(),
        "chosen": chosen.float().mean().item(),
        "rejected": rejected.float().mean().item(),
    }


def dpo(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor, beta: float = 0.1, target: torch.Tensor | float = 1.0,
        weights: torch.Tensor | None = None) -> LossOutput:
    """Direct preference optimization (Rafailov et al. 2023, eq. 7).

    DPO is Bradley-Terry on the implicit rewards beta * log(pi(y|x) / pi_ref(y|x)) of
    the two responses, so it calls `bradley_terry`. Inputs are summed response log-probs (B,).
    """
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    out = bradley_terry(chosen_reward, rejected_reward, target=target, weights=weights)
    metrics = {f"reward_{k}" if k in ("chosen", "rejected") else k: v for k, v in out.metrics.items()}
    return LossOutput(out.loss, metrics, count=out.count)


def ppo_clip(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             clip: float = 0.2, reduction: Reduction = "mean") -> LossOutput:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), negated for descent:

    L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)],  rho = pi(a|s) / pi_old(a|s).
    """
    assert logp.shape == old_logp.shape == advantages.shape == mask.shape
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(unclipped, clipped)
    loss = reduce(per_token, mask, reduction)
    with torch.no_grad():
        m = mask.bool()
        metrics = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask).item(),
            # k3 estimate of KL(pi_old || pi) on the sampled tokens (Schulman 2020)
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask).item(),
            "ratio_max": ratio[m].max().item() if m.any() else 1.0,
            "ratio_mean": masked_mean(ratio, mask).item(),
        }
    return LossOutput(loss, metrics)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None = 0.2, reduction: Reduction = "mean") -> LossOutput:
    """Squared error of the value head, with PPO2-style value clipping:

    L = 1/2 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2).
    """
    assert values.shape == old_values.shape == returns.shape == mask.shape
    err = (values - returns) ** 2
    if clip is not None:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        err_clipped = (v_clipped - returns) ** 2
        per_token = 0.5 * torch.maximum(err, err_clipped)
        clipfrac = masked_mean((err_clipped > err).float(), mask).item()
    else:
        per_token = 0.5 * err
        clipfrac = 0.0
    loss = reduce(per_token, mask, reduction)
    return LossOutput(loss, {"value_clipfrac": clipfrac, "value_mse": masked_mean(err.detach(), mask).item()})


def rating_regression(pred: torch.Tensor, score: torch.Tensor, center: float = 4.0, scale: float = 3.0
                      ) -> LossOutput:
    """"Approach 1" of the lectures: regress Likert ratings directly.

    loss = 1/2 mean (r(x, y) - (score - center) / scale)^2, mapping 1..7 onto [-1, 1]."""
    assert pred.shape == score.shape
    target = (score.to(pred.dtype) - center) / scale
    err = pred.float() - target.float()
    loss = 0.5 * (err**2).mean()
    return LossOutput(loss, {"rmse": err.detach().pow(2).mean().sqrt().item()})
