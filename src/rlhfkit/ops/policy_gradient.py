"""The GRPO family: group-relative advantages and the clipped surrogate with its loss reductions.

GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4.1) drops PPO's value model: it samples G
completions per prompt, scores each with one sequence reward, and uses the reward relative to
its group as the advantage of every token of that completion. Its descendants differ in two
places only, so each is a table here:
  - how the advantage is scaled (`ADVANTAGE_SCALES`): GRPO's group std, a batch std, or none
    (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.1);
  - how the per-token losses are reduced to a scalar (`LOSS_TYPES`): GRPO's per-sequence mean,
    Dr. GRPO's constant, DAPO's token mean over the global batch (Yu et al. 2025, sec. 3.3),
    or the token mean over the local batch ("bnpo").
The surrogate itself is PPO's clip with DAPO's decoupled bounds (1 - eps_low, 1 + eps_high),
"clip-higher" (Yu et al. 2025, sec. 3.1), plus an optional KL term in the loss (Shao et al. 2024,
eq. 3-4) whose estimators live in `ops/kl.py`.

Truncated completions: DAPO's overlong filtering (Yu et al. 2025, sec. 3.4) and TRL's
`mask_truncated_completions` leave them out of the loss. Here the caller does that by zeroing
their rows of `mask`; the reductions below then treat those rows as absent (see each one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from rlhfkit.ops.kl import kl_estimate, kl_estimate_is
from rlhfkit.ops.logprobs import masked_mean
from rlhfkit.ops.losses import LossOutput

Scale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo"]
KLEstimator = Literal["k1", "k2", "k3", "k3_is"]


# ---------------------------------------------------------------- advantages


def _group_std(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """GRPO: each group's own std (Shao et al. 2024, sec. 4.1.2)."""
    return grouped.std(dim=1, keepdim=True) + eps  # (P, 1)


def _batch_std(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """One std over the whole batch: group-mean centering, batch-std scaling ("Tricks or Traps?
    A Deep Dive into RL for LLM Reasoning", Liu et al. 2025, arXiv 2508.08221; TRL
    scale_rewards="batch")."""
    return grouped.std() + eps  # ()


def _no_scale(grouped: torch.Tensor, eps: float) -> torch.Tensor:
    """Dr. GRPO: no std division, which otherwise up-weights prompts that are nearly always
    solved or nearly always failed (Liu et al. 2025, sec. 3.1, "question-level difficulty bias")."""
    return torch.ones((), dtype=grouped.dtype, device=grouped.device)


# name -> (rewards (P, G), eps) -> divisor broadcastable to (P, G)
ADVANTAGE_SCALES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "group": _group_std,
    "batch": _batch_std,
    "none": _no_scale,
}


def group_advantages(rewards: torch.Tensor, group_size: int, scale: Scale = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages A_i = (r_i - mean(group)) / s (Shao et al. 2024, sec. 4.1.2).

    `rewards` (N,) are laid out prompt-major: samples [g*G, (g+1)*G) share a prompt. The divisor
    s is `ADVANTAGE_SCALES[scale]`: the group's std + eps, the batch's std + eps, or 1.
    The std is the UNBIASED one (Bessel's correction, divides by n - 1), as `torch.std` and TRL.
    A group whose rewards are all equal has advantage exactly 0 under every scale (it carries
    no signal; without this, rounding in its mean divided by eps could leave noise). Returns (N,).
    """
    assert rewards.dim() == 1, f"rewards must be (N,), got {tuple(rewards.shape)}"
    assert group_size >= 2, "a group needs at least 2 samples"
    assert rewards.numel() % group_size == 0, f"{rewards.numel()} rewards is not a multiple of {group_size}"
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}: use one of {sorted(ADVANTAGE_SCALES)}")
    grouped = (rewards if rewards.is_floating_point() else rewards.float()).view(-1, group_size)  # (P, G)
    centered = grouped - grouped.mean(dim=1, keepdim=True)  # (P, G)
    adv = centered / ADVANTAGE_SCALES[scale](grouped, eps)  # (P, G)
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # (P, 1)
    return torch.where(constant, torch.zeros_like(adv), adv).reshape(-1)  # (N,)


def leave_one_out_baseline(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO advantages r_i - b_i, b_i = mean of the other k - 1 samples of the same prompt
    (RLOO: Ahmadian et al. 2024, "Back to Basics", after Kool et al. 2019).

    Equal to k/(k-1) * (r_i - mean(group)): an unbiased baseline, as b_i does not depend on
    sample i. `rewards` (N,) prompt-major, k samples per prompt. Returns (N,).
    """
    assert rewards.dim() == 1 and k >= 2 and rewards.numel() % k == 0, (tuple(rewards.shape), k)
    grouped = (rewards if rewards.is_floating_point() else rewards.float()).view(-1, k)  # (P, k)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)  # (P, k)
    return (grouped - others).reshape(-1)  # (N,)


# ---------------------------------------------------------------- loss reductions
# Each: (per_token_loss (B, T), mask (B, T), **normalizers) -> scalar. Masked positions, and
# rows zeroed out (truncated completions), contribute nothing to any numerator.


def _masked_total(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token * mask.to(per_token.dtype)).sum()


def grpo_reduction(per_token: torch.Tensor, mask: torch.Tensor, **_: object) -> torch.Tensor:
    """GRPO: mean over each sequence's tokens, then mean over sequences (Shao et al. 2024, eq. 3,
    the 1/G sum_i 1/|o_i| sum_t). Rows with no active token (masked truncations) are left out
    of the sequence mean rather than counted as zeros. Length-biased: a long wrong answer is
    penalized less per token (Liu et al. 2025, sec. 3.1)."""
    m = mask.to(per_token.dtype)
    lengths = m.sum(dim=1)  # (B,)
    seq_mean = (per_token * m).sum(dim=1) / lengths.clamp(min=1.0)  # (B,)
    active = lengths > 0  # (B,)
    if not active.any():
        raise ValueError("grpo loss: no sequence has an active token")
    return seq_mean[active].mean()


def dr_grpo_reduction(per_token: torch.Tensor, mask: torch.Tensor, *, max_len: int | None = None,
                      **_: object) -> torch.Tensor:
    """Dr. GRPO: sum over all tokens / (B * max_completion_length), a constant, so no sequence's
    tokens weigh more for being short (Liu et al. 2025, sec. 3.1; their listing's MAX_TOKENS).
    B counts every row, masked ones included: the denominator must not depend on the samples."""
    if max_len is None or max_len <= 0:
        raise ValueError("dr_grpo loss needs max_len, the generation's max completion length")
    return _masked_total(per_token, mask) / (per_token.shape[0] * max_len)


def dapo_reduction(per_token: torch.Tensor, mask: torch.Tensor, *,
                   num_tokens: float | torch.Tensor | None = None, **_: object) -> torch.Tensor:
    """DAPO's token-level loss: sum over all tokens / number of active tokens in the GLOBAL batch,
    every process and gradient-accumulation micro-batch together (Yu et al. 2025, sec. 3.3),
    so every token of the update weighs the same. `num_tokens` is that global count, gathered by
    the caller (`train/`); default: this batch's mask sum, which makes it equal to "bnpo"."""
    n = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens)
    if not n > 0:
        raise ValueError(f"dapo loss: num_tokens must be positive, got {float(n)}")
    return _masked_total(per_token, mask) / n.to(per_token.dtype)


def bnpo_reduction(per_token: torch.Tensor, mask: torch.Tensor, **_: object) -> torch.Tensor:
    """Token mean over the LOCAL batch: sum / this batch's active tokens (TRL's "bnpo"). Equals
    DAPO on one process without accumulation; otherwise depends on how the batch is split."""
    n = mask.sum()
    if not n > 0:
        raise ValueError("bnpo loss: the batch has no active token")
    return _masked_total(per_token, mask) / n.to(per_token.dtype)


LOSS_TYPES: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": grpo_reduction,
    "dr_grpo": dr_grpo_reduction,
    "dapo": dapo_reduction,
    "bnpo": bnpo_reduction,
}


# ---------------------------------------------------------------- the KL term


def _k1(logp: torch.Tensor, ref_logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    return kl_estimate(logp, ref_logp, "k1")


def _k2(logp: torch.Tensor, ref_logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    return kl_estimate(logp, ref_logp, "k2")


def _k3(logp: torch.Tensor, ref_logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """GRPO's in-loss KL (Shao et al. 2024, eq. 4; Schulman 2020): biased gradient, see kl_estimate_is."""
    return kl_estimate(logp, ref_logp, "k3")


def _k3_is(logp: torch.Tensor, ref_logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """(pi/pi_old) * k3: unbiased gradient of KL(pi || pi_ref) (DeepSeek-V3.2, sec. 3.1, eq. 7)."""
    return kl_estimate_is(logp, ref_logp, old_logp, "k3")


# name -> (logp, ref_logp, old_logp), each (B, T) -> per-token KL (B, T), differentiable in logp
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": _k1,
    "k2": _k2,
    "k3": _k3,
    "k3_is": _k3_is,
}


def _kl_term(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
             kl: torch.Tensor | None, estimator: str) -> torch.Tensor:
    """The per-token KL (B, T): the caller's `kl`, or `KL_ESTIMATORS[estimator]` from `ref_logp`."""
    if (kl is None) == (ref_logp is None):
        raise ValueError("beta > 0 needs exactly one of ref_logp (to estimate the KL) or kl (per-token)")
    if kl is not None:
        assert kl.shape == logp.shape, f"kl {tuple(kl.shape)} vs logp {tuple(logp.shape)}"
        return kl
    assert ref_logp is not None and ref_logp.shape == logp.shape
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}: use one of {sorted(KL_ESTIMATORS)}")
    return KL_ESTIMATORS[estimator](logp, ref_logp, old_logp)


# ---------------------------------------------------------------- the loss


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float,
                      eps_high: float) -> torch.Tensor:
    """Per-token -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) (Schulman et al. 2017, eq. 7,
    with DAPO's decoupled "clip-higher" bounds, Yu et al. 2025, sec. 3.1). Where the clip
    is the minimum (rho > 1 + eps_high with A > 0, rho < 1 - eps_low with A < 0) the gradient is 0.
    `ratio` (B, T), `advantages` broadcastable to it. Returns (B, T)."""
    unclipped = -advantages * ratio  # (B, T)
    clipped = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)  # (B, T)
    return torch.maximum(unclipped, clipped)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              loss_type: LossType, eps_low: float, eps_high: float, beta: float = 0.0,
              ref_logp: torch.Tensor | None = None, kl: torch.Tensor | None = None,
              kl_estimator: KLEstimator = "k3", num_tokens: float | torch.Tensor | None = None,
              max_len: int | None = None) -> LossOutput:
    """The GRPO-family policy loss (Shao et al. 2024, eq. 3, negated for descent):

        loss_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) + beta * KL_t,
        rho_t = exp(logp_t - old_logp_t),

    reduced to a scalar by `LOSS_TYPES[loss_type]` (with `num_tokens` for "dapo", `max_len` for
    "dr_grpo"). `logp` (B, T) are the policy's response log-probs (with gradient); `old_logp`
    (B, T) the sampling policy's (no gradient); `advantages` (B,) one per sequence, broadcast over
    its tokens, or (B, T). The KL term (only if beta > 0): the caller's per-token `kl` (B, T),
    or `KL_ESTIMATORS[kl_estimator]` of `ref_logp` (B, T): "k3" is GRPO's (eq. 4), "k3_is" the
    bias-corrected one (`ops.kl.kl_estimate_is`). To leave truncated completions out of the loss
    (DAPO sec. 3.4), pass `mask` with their rows zeroed. An all-zero mask raises ValueError.
    """
    assert logp.shape == old_logp.shape == mask.shape, (logp.shape, old_logp.shape, mask.shape)
    assert advantages.shape in (logp.shape[:1], logp.shape), f"advantages {tuple(advantages.shape)}"
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}: use one of {sorted(LOSS_TYPES)}")
    if not mask.any():
        raise ValueError("grpo_loss: the mask is all zeros (every completion masked), nothing to learn from")
    adv = (advantages.unsqueeze(1) if advantages.dim() == 1 else advantages).to(logp.dtype).detach()  # (B, 1|T)
    ratio = torch.exp(logp - old_logp.detach())  # (B, T)
    per_token = clipped_surrogate(ratio, adv, eps_low, eps_high)  # (B, T)
    kl_t = _kl_term(logp, old_logp.detach(), ref_logp, kl, kl_estimator) if beta > 0 else None  # (B, T)
    if kl_t is not None:
        per_token = per_token + beta * kl_t
    loss = LOSS_TYPES[loss_type](per_token, mask, num_tokens=num_tokens, max_len=max_len)
    return LossOutput(loss, _metrics(ratio, adv, mask, kl_t, loss, eps_low, eps_high))


def _metrics(ratio: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, kl_t: torch.Tensor | None,
             loss: torch.Tensor, eps_low: float, eps_high: float) -> dict[str, float]:
    """Fractions of active tokens whose clip is binding (zero gradient), ratio statistics, the KL."""
    with torch.no_grad():
        r = ratio.detach()
        low = ((r < 1.0 - eps_low) & (adv < 0)).float()  # (B, T)
        high = ((r > 1.0 + eps_high) & (adv > 0)).float()  # (B, T)
        metrics = {
            "clipfrac_low": masked_mean(low, mask).item(),
            "clipfrac_high": masked_mean(high, mask).item(),
            "clipfrac": masked_mean(low + high, mask).item(),
            "ratio_mean": masked_mean(r, mask).item(),
            "ratio_max": r[mask.bool()].max().item(),
            "loss": loss.detach().item(),
        }
        if kl_t is not None:
            metrics["kl"] = masked_mean(kl_t.detach(), mask).item()
    return metrics
