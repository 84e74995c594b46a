"""The DPO family of pairwise losses, and KTO: pure functions of summed response log-probs.

Each pairwise loss is `(PairLogps, PairLossConfig, target, weights) -> LossOutput`, named in the
table `PAIR_LOSSES` (no if-ladder). Where a loss is Bradley-Terry (DPO, cDPO, robust DPO,
SimPO, ORPO's odds-ratio term) it calls `ops.losses.bradley_terry`.

Targets. `target` mu is the probability the chosen response is preferred: 1 for a clear
preference, 1/2 for a tie (rankings give 1/2 to tied pairs). A loss defined for a clear
preference, l(h) with h the chosen-minus-rejected margin, becomes the expected loss under that
label, mu l(h) + (1 - mu) l(-h); for the sigmoid loss this is exactly Bradley-Terry's
cross-entropy. `weights` (e.g. 1/C(K,2) per pair of a K-way ranking) make every loss a weighted
mean, and the output's `count` is their sum. DPO trainers drop ties by default (`drop_ties`).

Inputs are summed log-probs (B,) with response token counts (B,) for the length-normalized
losses (SimPO, ORPO, RPO's NLL term). Every loss reports `accuracy` (over decided pairs),
`margin`, `reward_chosen`, `reward_rejected` of its own implicit reward (`PairLoss.reward`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch

from rlhfkit.errors import UserError
from rlhfkit.ops.losses import (
    LossOutput,
    bradley_terry,
    dpo,
    pair_metrics,
    weighted_mean,
)

Target = torch.Tensor | float


@dataclass(frozen=True)
class PairLogps:
    """Summed response log-probs of a batch of comparisons under the policy (and reference)."""

    chosen: torch.Tensor  # (B,) log pi(y_c|x)
    rejected: torch.Tensor  # (B,) log pi(y_r|x)
    chosen_tokens: torch.Tensor  # (B,) |y_c|, response tokens scored
    rejected_tokens: torch.Tensor  # (B,) |y_r|
    ref_chosen: torch.Tensor | None = None  # (B,) log pi_ref(y_c|x); None for reference-free losses
    ref_rejected: torch.Tensor | None = None  # (B,)

    def __post_init__(self) -> None:
        b = self.chosen.shape
        assert len(b) == 1, f"summed log-probs are (B,), got {tuple(b)}"
        for name in ("rejected", "chosen_tokens", "rejected_tokens", "ref_chosen", "ref_rejected"):
            x = getattr(self, name)
            assert x is None or x.shape == b, f"{name}: {tuple(x.shape)} vs chosen {tuple(b)}"
        assert (self.ref_chosen is None) == (self.ref_rejected is None), "give both reference log-probs or neither"

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(y|x) / pi_ref(y|x) of chosen and rejected, (B,) each."""
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError("this loss needs the reference log-probs (ref_chosen, ref_rejected)")
        return self.chosen - self.ref_chosen, self.rejected - self.ref_rejected

    def mean_logps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Length-normalized log-probs log pi(y|x) / |y|, (B,) each (SimPO's and ORPO's)."""
        return (self.chosen.float() / self.chosen_tokens.float().clamp(min=1),
                self.rejected.float() / self.rejected_tokens.float().clamp(min=1))


@dataclass(frozen=True)
class PairLossConfig:
    """Hyperparameters of the pairwise losses; each loss reads the fields it names."""

    beta: float = 0.1  # DPO temperature (also IPO's tau, the hinge's scale, RPO's DPO term)
    label_smoothing: float = 0.1  # eps: the assumed label-flip rate of cdpo and robust, in [0, 1/2)
    rpo_alpha: float = 1.0  # weight of RPO's length-normalized NLL on the chosen response
    # SimPO's own beta: its reward is an average log-prob per token, a far smaller number than
    # DPO's summed log-ratio, so the paper tunes beta in 2.0-2.5 (Meng et al. 2024); `beta` stays DPO's
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5  # SimPO's target reward margin gamma (eq. 6)
    orpo_lambda: float = 0.1  # ORPO's weight of the odds-ratio term (Hong et al. 2024, eq. 6)

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 0.5:
            raise UserError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.beta <= 0 or self.simpo_beta <= 0:
            raise UserError(f"beta and simpo_beta must be positive, got {self.beta}, {self.simpo_beta}")

    @classmethod
    def from_fields(cls, obj: Any) -> PairLossConfig:
        """The config read from the same-named attributes of a trainer's config (`DPOConfig`)."""
        return cls(**{f.name: getattr(obj, f.name) for f in fields(cls)})


Rewards = tuple[torch.Tensor, torch.Tensor]


def log_ratio_rewards(logps: PairLogps, hp: PairLossConfig) -> Rewards:
    """DPO's implicit reward beta log pi(y|x) / pi_ref(y|x) (Rafailov et al. 2023, eq. 5)."""
    c, r = logps.log_ratios()
    return hp.beta * c, hp.beta * r


def simpo_rewards(logps: PairLogps, hp: PairLossConfig) -> Rewards:
    """SimPO's reward beta/|y| log pi(y|x) (Meng et al. 2024, eq. 4)."""
    c, r = logps.mean_logps()
    return hp.simpo_beta * c, hp.simpo_beta * r


def mean_logp_rewards(logps: PairLogps, hp: PairLossConfig) -> Rewards:
    """The average log-prob per token, what ORPO's odds are made of (Hong et al. 2024)."""
    return logps.mean_logps()


def _mu(target: Target, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(target, dtype=torch.float32, device=like.device).expand(like.shape)  # (B,)


def _over_label(per_ordering: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, mu: torch.Tensor
                ) -> torch.Tensor:
    """mu l(h) + (1 - mu) l(-h): a clear-preference loss l averaged over the label (module doc)."""
    return mu * per_ordering(h) + (1.0 - mu) * per_ordering(-h)


def _preferred_nll(mean_c: torch.Tensor, mean_r: torch.Tensor, mu: torch.Tensor, weights: torch.Tensor | None
                   ) -> torch.Tensor:
    """The NLL per token of the preferred response, over the label: mu NLL(y_c) + (1 - mu) NLL(y_r),
    from the length-normalized log-probs (B,) each; RPO's and ORPO's SFT term."""
    nll, _ = weighted_mean(-(mu * mean_c.float() + (1.0 - mu) * mean_r.float()), weights)
    return nll


def _metrics(rewards: Rewards, target: Target, **extra: float) -> dict[str, float]:
    m = pair_metrics(rewards[0], rewards[1], target)
    return {"accuracy": m["accuracy"], "margin": m["margin"], "reward_chosen": m["chosen"],
            "reward_rejected": m["rejected"], **extra}


def sigmoid(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
            ) -> LossOutput:
    """DPO (Rafailov et al. 2023, eq. 7): Bradley-Terry on beta (log-ratio), via `losses.dpo`."""
    ref_c, ref_r = logps.ref_chosen, logps.ref_rejected
    if ref_c is None or ref_r is None:
        raise ValueError("sigmoid (DPO) needs the reference log-probs")
    return dpo(logps.chosen, logps.rejected, ref_c, ref_r, hp.beta, target=target, weights=weights)


def _log_ratio_bradley_terry(logps: PairLogps, hp: PairLossConfig, bt_target: torch.Tensor, target: Target,
                             weights: torch.Tensor | None) -> LossOutput:
    rc, rr = log_ratio_rewards(logps, hp)  # (B,) each
    out = bradley_terry(rc, rr, target=bt_target, weights=weights)
    return LossOutput(out.loss, _metrics((rc, rr), target), count=out.count)


def cdpo(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
         ) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): labels flipped
    with probability eps, i.e. Bradley-Terry with the smoothed target eps + (1 - 2 eps) mu
    (1 - eps for a clear preference; a tie stays 1/2)."""
    eps = hp.label_smoothing
    mu = _mu(target, logps.chosen)
    return _log_ratio_bradley_terry(logps, hp, eps + (1.0 - 2.0 * eps) * mu, target, weights)


def robust(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
           ) -> LossOutput:
    """Robust DPO (Chowdhury et al. 2024, "Provably robust DPO"): the unbiased loss under label
    flips at rate eps, [(1 - eps) l(beta h) - eps l(-beta h)] / (1 - 2 eps), l = -log sigmoid.
    That is Bradley-Terry with the de-smoothed target (mu - eps) / (1 - 2 eps), the inverse of
    cdpo's map (a target above 1 for a clear preference; a tie stays 1/2)."""
    eps = hp.label_smoothing
    mu = _mu(target, logps.chosen)
    return _log_ratio_bradley_terry(logps, hp, (mu - eps) / (1.0 - 2.0 * eps), target, weights)


def ipo(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
        ) -> LossOutput:
    """IPO (Azar et al. 2023, eq. 17): (h - 1/(2 tau))^2 with tau = beta and h the difference of
    summed log-ratios, as in the paper (TRL divides the log-probs by the length for IPO; we do
    not). Over the label, mu (h - c)^2 + (1 - mu)(h + c)^2 is least at h = (2 mu - 1) c, IPO's
    population optimum (mu - 1/2) / tau; a tie asks for equal log-ratios."""
    lc, lr = logps.log_ratios()
    h = (lc - lr).float()  # (B,)
    c = 1.0 / (2.0 * hp.beta)
    per_pair = _over_label(lambda x: (x - c) ** 2, h, _mu(target, h))  # (B,)
    loss, count = weighted_mean(per_pair, weights)
    return LossOutput(loss, _metrics(log_ratio_rewards(logps, hp), target), count=count)


def hinge(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
          ) -> LossOutput:
    """SLiC's calibration hinge (Zhao et al. 2023, "SLiC-HF") on the reference-normalized margin
    of RSO (Liu et al. 2024): relu(1 - beta h). A tie, mu = 1/2, asks |beta h| <= 1."""
    lc, lr = logps.log_ratios()
    h = (lc - lr).float()  # (B,)
    per_pair = _over_label(lambda x: torch.relu(1.0 - hp.beta * x), h, _mu(target, h))  # (B,)
    loss, count = weighted_mean(per_pair, weights)
    return LossOutput(loss, _metrics(log_ratio_rewards(logps, hp), target), count=count)


def rpo(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
        ) -> LossOutput:
    """Iterative RPO (Pang et al. 2024, "Iterative reasoning preference optimization"): DPO plus
    alpha times the chosen response's NLL per token, -log pi(y_c|x) / |y_c|. Over the label the
    NLL goes to the preferred response, mu NLL(y_c) + (1 - mu) NLL(y_r): a tie trains on both."""
    out = sigmoid(logps, hp, target, weights)
    mc, mr = logps.mean_logps()  # (B,) each
    nll = _preferred_nll(mc, mr, _mu(target, mc), weights)
    return LossOutput(out.loss + hp.rpo_alpha * nll, {**out.metrics, "nll": nll.item()}, count=out.count)


def simpo(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
          ) -> LossOutput:
    """SimPO (Meng et al. 2024, eq. 6): -log sigmoid(beta/|y_c| log pi(y_c|x) - beta/|y_r| log pi(y_r|x)
    - gamma), reference-free: Bradley-Terry on the length-normalized rewards with the margin gamma
    demanded in the direction of the preference, gamma (2 mu - 1) (none for a tie)."""
    rc, rr = simpo_rewards(logps, hp)  # (B,) each
    mu = _mu(target, rc)
    out = bradley_terry(rc - hp.simpo_gamma * (2.0 * mu - 1.0), rr, target=mu, weights=weights)
    return LossOutput(out.loss, _metrics((rc, rr), target), count=out.count)


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of p = exp(a), a <= 0 the average log-prob: a - log(-expm1(a)), stable
    where p is small; a is kept below -1e-6 so a certain response has finite odds."""
    a = mean_logp.float().clamp(max=-1e-6)
    return a - torch.log(-torch.expm1(a))


def orpo(logps: PairLogps, hp: PairLossConfig, target: Target = 1.0, weights: torch.Tensor | None = None
         ) -> LossOutput:
    """ORPO (Hong et al. 2024, eq. 6-7), reference-free: the chosen response's NLL per token plus
    lambda (-log sigmoid(log odds(y_c) - log odds(y_r))), the odds of p = P(y|x)^(1/|y|). The odds
    term is Bradley-Terry on the log-odds (target passed through); the NLL goes to the preferred
    response over the label, mu NLL(y_c) + (1 - mu) NLL(y_r)."""
    mc, mr = mean_logp_rewards(logps, hp)  # (B,) each
    mu = _mu(target, mc)
    odds = bradley_terry(_log_odds(mc), _log_odds(mr), target=mu, weights=weights)
    nll = _preferred_nll(mc, mr, mu, weights)
    extra = {"nll": nll.item(), "odds_ratio_loss": odds.loss.item(), "log_odds_ratio": odds.metrics["margin"]}
    return LossOutput(nll + hp.orpo_lambda * odds.loss, _metrics((mc, mr), target, **extra), count=odds.count)


PairLossFn = Callable[[PairLogps, PairLossConfig, Target, torch.Tensor | None], LossOutput]
RewardFn = Callable[[PairLogps, PairLossConfig], Rewards]


@dataclass(frozen=True)
class PairLoss:
    """One entry of the table: the loss, whether it reads reference log-probs, its implicit
    reward (for held-out accuracy), and a one-line description."""

    fn: PairLossFn
    needs_reference: bool
    reward: RewardFn
    doc: str


PAIR_LOSSES: dict[str, PairLoss] = {
    "sigmoid": PairLoss(sigmoid, True, log_ratio_rewards,
                        "DPO (Rafailov et al. 2023): Bradley-Terry on beta log-ratios"),
    "ipo": PairLoss(ipo, True, log_ratio_rewards, "IPO (Azar et al. 2023): squared distance of h to 1/(2 beta)"),
    "cdpo": PairLoss(cdpo, True, log_ratio_rewards, "conservative DPO (Mitchell 2023): target 1 - label_smoothing"),
    "robust": PairLoss(robust, True, log_ratio_rewards,
                       "robust DPO (Chowdhury et al. 2024): unbiased under label_smoothing flips"),
    "hinge": PairLoss(hinge, True, log_ratio_rewards, "SLiC/RSO hinge (Zhao et al. 2023): relu(1 - beta h)"),
    "rpo": PairLoss(rpo, True, log_ratio_rewards, "RPO (Pang et al. 2024): DPO + rpo_alpha x NLL per token of chosen"),
    "simpo": PairLoss(simpo, False, simpo_rewards,
                      "SimPO (Meng et al. 2024): length-normalized, margin simpo_gamma, no reference"),
    "orpo": PairLoss(orpo, False, mean_logp_rewards,
                     "ORPO (Hong et al. 2024): NLL + orpo_lambda x odds-ratio loss, no reference"),
}


def pair_loss(name: str) -> PairLoss:
    """The table's entry, or a UserError that lists the names."""
    if name not in PAIR_LOSSES:
        raise UserError(f"unknown pairwise loss {name!r}; one of {', '.join(PAIR_LOSSES)}")
    return PAIR_LOSSES[name]


def kto(policy_logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor,
        kl_policy_logps: torch.Tensor, kl_ref_logps: torch.Tensor, beta: float = 0.1, lambda_d: float = 1.0,
        lambda_u: float = 1.0) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, eq. 8): L = E[lambda_y - v(x, y)] with r = log pi(y|x) / pi_ref(y|x),
    v = lambda_D sigmoid(beta (r - z0)) for a desirable response, lambda_U sigmoid(beta (z0 - r)) else.

    The reference point z0 = max(0, mean(kl_policy_logps - kl_ref_logps)), detached: the paper's
    estimate of KL(pi || pi_ref) from mismatched (prompt, response) pairs of the batch,
    whose summed log-probs the caller supplies, (M,) each. Inputs (B,): summed response log-probs
    and `desirable` (bool). The paper advises lambda_D n_D / (lambda_U n_U) in [1, 4/3].
    Metrics: `kl` (z0), mean beta r of each group (0.0 for a group absent from the batch) and counts.
    """
    assert policy_logps.dim() == 1 and policy_logps.shape == ref_logps.shape == desirable.shape, (
        f"{tuple(policy_logps.shape)}, {tuple(ref_logps.shape)}, {tuple(desirable.shape)}")
    assert kl_policy_logps.dim() == 1 and kl_policy_logps.shape == kl_ref_logps.shape and kl_policy_logps.numel() > 0
    z0 = (kl_policy_logps.float() - kl_ref_logps.float()).mean().clamp(min=0.0).detach()  # ()
    r = policy_logps.float() - ref_logps.float()  # (B,)
    d = desirable.bool()  # (B,)
    v = torch.where(d, lambda_d * torch.sigmoid(beta * (r - z0)), lambda_u * torch.sigmoid(beta * (z0 - r)))  # (B,)
    lam = torch.where(d, torch.full_like(r, lambda_d), torch.full_like(r, lambda_u))  # (B,)
    loss = (lam - v).mean()
    with torch.no_grad():
        n_d, n_u = int(d.sum()), int((~d).sum())
        reward = beta * r
        metrics = {"kl": z0.item(), "n_desirable": float(n_d), "n_undesirable": float(n_u),
                   "reward_desirable": reward[d].mean().item() if n_d else 0.0,
                   "reward_undesirable": reward[~d].mean().item() if n_u else 0.0}
    return LossOutput(loss, metrics)
