"""KL between the policy and the reference policy, and the controllers of its weight beta.

Estimators of KL(pi || pi_ref) from samples y ~ pi (Schulman, "Approximating KL
divergence", 2020), with log-ratio r = log pi_ref(y) - log pi(y):
  k1 = -r                 unbiased, high variance, can be negative per sample
  k2 = r^2 / 2            biased, low variance, always >= 0
  k3 = (e^r - 1) - r      unbiased, low variance, always >= 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: KLKind = "k1") -> torch.Tensor:
    """Per-token KL estimate from the sampled tokens' log-probs; same shape as inputs."""
    assert logp.shape == ref_logp.shape
    log_ratio = ref_logp - logp
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}: use k1, k2 or k3")


def kl_estimate_is(logp: torch.Tensor, ref_logp: torch.Tensor, old_logp: torch.Tensor,
                   kind: KLKind = "k3") -> torch.Tensor:
    """Importance-weighted per-token KL estimate, for a KL term differentiated inside the loss:

        (pi(y)/pi_old(y)) * k(y),   y ~ pi_old,   ratio = exp(logp - old_logp), NOT detached.

    With kind="k3" this is the "unbiased KL estimate" of DeepSeek-V3.2 (DeepSeek-AI 2025,
    arXiv 2512.02556, sec. 3.1, eq. 7), TRL's `use_bias_correction_kl` (trl issue #4637,
    PR #4638; made the default in PR #6503 after issue #4967; per-token ratio: issue #6586).
    Why: the samples come from pi_old, and the gradient of k3 itself, (1 - pi_ref/pi) grad log pi,
    has expectation -sum_y pi_ref grad log pi = grad KL(pi_ref || pi), the FORWARD KL, not the
    reverse KL(pi || pi_ref) that GRPO's objective names (Shao et al. 2024, eq. 4; worked out in
    verl PR #2953 and "A Comedy of Estimators", arXiv 2512.21852). The weighted form has gradient

        grad[(pi/pi_old) k3] = (pi/pi_old) (log pi - log pi_ref) grad log pi,

    whose expectation under pi_old is sum_y grad pi (log pi/pi_ref) = grad KL(pi || pi_ref):
    unbiased, on- or off-policy. Its value, exp(logp - old_logp) * k3, has expectation KL(pi || pi_ref)
    too. On-policy (ratio = 1 in value) the gradient equals that of k2 = r^2/2, which
    is also unbiased there. kind="k1" is unbiased as well (the extra ratio * grad log pi term has
    mean 0) but noisier; kind="k2" is biased off-policy. Same shape as the inputs.
    """
    assert logp.shape == ref_logp.shape == old_logp.shape
    return torch.exp(logp - old_logp) * kl_estimate(logp, ref_logp, kind)


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         beta: float, kind: KLKind = "k1") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards R_t = -beta * KL_t, plus the reward-model score on the last response token.

    This is R(x, y) = r_phi(x, y) - beta * log(pi(y|x) / pi_ref(y|x)) (Ziegler et al. 2019, eq. 2;
    Stiennon et al. 2020, eq. 1) spread over tokens. Returns (rewards (B, T), kl (B, T)).
    """
    assert score.dim() == 1 and logp.shape == mask.shape and score.shape[0] == logp.shape[0]
    kl = kl_estimate(logp, ref_logp, kind) * mask  # (B, T)
    rewards = -beta * kl
    lengths = mask.long().sum(1)  # (B,)
    last = (lengths - 1).clamp(min=0)
    has_tokens = (lengths > 0).to(rewards.dtype)
    rewards = rewards.scatter_add(1, last.unsqueeze(1), (score * has_tokens).unsqueeze(1))
    return rewards, kl


@dataclass
class FixedKLController:
    """A constant beta."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        return None

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019, sec. 2.2: a proportional controller steering KL to a target.

    e_t = clip(KL_t / target - 1, -0.2, 0.2);  beta_{t+1} = beta_t (1 + K_beta e_t),
    with K_beta = n_steps / horizon (the paper's K_beta = 0.1 at its horizon).
    """

    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n for a continuous reward without ties (the
    closed form of Hilton & Gao; Beirami et al. 2024 show it is an upper bound in general)."""
    return math.log(n) - (n - 1) / n
