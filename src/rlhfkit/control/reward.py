"""The reward estimate: an ensemble of small MLPs r(o, a), fitted to comparisons of segments
by Bradley-Terry over summed per-step rewards (Christiano et al. 2017, eq. 1, sec. 2.2.3).

Paper details kept here:
- each member is fitted on a bootstrap resample of the training comparisons;
- a share of the comparisons is held out, and the L2 weight is adapted so that the
  validation loss stays between 1.1 and 1.5 times the training loss;
- the likelihood assumes a 10% chance that the labeler answered at random
  (`bradley_terry(..., noise=0.1)`);
- the agent sees the ensemble mean, normalized (see `RewardEnsemble.normalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlhfkit.ops.losses import bradley_terry


def make_member(feature_dim: int, hidden: int) -> nn.Module:
    """Two hidden layers of leaky ReLUs, as the paper's MuJoCo predictor."""
    return nn.Sequential(nn.Linear(feature_dim, hidden), nn.LeakyReLU(0.01), nn.Linear(hidden, hidden),
                         nn.LeakyReLU(0.01), nn.Linear(hidden, 1))


@dataclass
class PairData:
    """Labeled comparisons: segment features and mu = P(first preferred) (1, 0 or 0.5 for a tie)."""

    a: torch.Tensor  # (N, k, F)
    b: torch.Tensor  # (N, k, F)
    mu: torch.Tensor  # (N,)

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def subset(self, idx: np.ndarray | torch.Tensor) -> "PairData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PairData(self.a[idx], self.b[idx], self.mu[idx])


def segment_loss(member: nn.Module, data: PairData, noise: float) -> torch.Tensor:
    """-log P(labels) with P(a > b) = (1 - eps) sigmoid(sum r(a) - sum r(b)) + eps/2."""
    ra = member(data.a).squeeze(-1).sum(-1)  # (N,) summed over k steps
    rb = member(data.b).squeeze(-1).sum(-1)  # (N,)
    return bradley_terry(ra, rb, target=data.mu, noise=noise).loss


class RewardEnsemble:
    """K reward MLPs plus the normalization the agent sees: (mean_k r_k(x) - center) / scale."""

    def __init__(self, feature_dim: int, members: int = 3, hidden: int = 64, lr: float = 1e-3,
                 l2: float = 1e-4, noise: float = 0.1, seed: int = 0) -> None:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.members = [make_member(feature_dim, hidden) for _ in range(members)]
        torch.random.set_rng_state(gen_state)
        self.lr, self.l2, self.noise = lr, l2, noise
        self.rng = np.random.default_rng(seed)
        self.center, self.scale = 0.0, 1.0
        self.last_metrics: dict[str, float] = {}

    # ---- prediction -------------------------------------------------------------------
    @torch.no_grad()
    def member_returns(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Summed rewards of segments x (N, k, F) under each member: (K, N)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        return torch.stack([m(x).squeeze(-1).sum(-1) for m in self.members])

    @torch.no_grad()
    def raw(self, x: np.ndarray) -> np.ndarray:
        """Ensemble-mean per-step reward of rows x (N, F), before normalization: (N,)."""
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return torch.stack([m(xt).squeeze(-1) for m in self.members]).mean(0).numpy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The normalized reward the agent is trained on, for rows x (N, F): (N,)."""
        return (self.raw(x) - self.center) / self.scale

    def normalize(self, x: np.ndarray, absorbing: np.ndarray | None) -> None:
        """Center at the absorbing step's reward when the environment can terminate (so
        ending an episode is worth 0 from then on, as in the absorbing MDP), else at the
        mean over visited steps x; then scale to unit root-mean-square around the center.
        (Not the std: on CartPole every upright step earns about the same, and dividing by
        their tiny spread would blow the rewards up.)"""
        r = self.raw(x)
        self.center = float(self.raw(absorbing)[0]) if absorbing is not None else float(r.mean())
        self.scale = float(max(np.sqrt(np.mean((r - self.center) ** 2)), 1e-6))

    # ---- fitting --------------------------------------------------------------------------
    def fit(self, train: PairData, val: PairData | None, steps: int = 300, batch: int = 64) -> dict[str, float]:
        """Fit every member on its own bootstrap of `train`, then adapt L2 from the val/train ratio."""
        losses = []
        for member in self.members:
            boot = self.rng.integers(len(train), size=len(train))
            self._fit_member(member, train.subset(boot), steps, batch)
            with torch.no_grad():
                losses.append(segment_loss(member, train, self.noise).item())
        metrics = {"reward/train_loss": float(np.mean(losses)), "reward/l2": self.l2,
                   "reward/train_accuracy": self.accuracy(train)}
        if val is not None and len(val):
            with torch.no_grad():
                v = float(np.mean([segment_loss(m, val, self.noise).item() for m in self.members]))
            metrics["reward/val_loss"] = v
            metrics["reward/val_accuracy"] = self.accuracy(val)
            ratio = v / max(metrics["reward/train_loss"], 1e-6)
            # Christiano et al. 2017 (sec. 2.2.3): keep validation loss 1.1-1.5x training loss.
            if ratio > 1.5:
                self.l2 = min(self.l2 * 2.0, 1.0)
            elif ratio < 1.1:
                self.l2 = max(self.l2 / 2.0, 1e-6)
        self.last_metrics = metrics
        return metrics

    def _fit_member(self, member: nn.Module, data: PairData, steps: int, batch: int) -> None:
        opt = torch.optim.Adam(member.parameters(), lr=self.lr)
        n = len(data)
        for _ in range(steps):
            idx = self.rng.integers(n, size=min(batch, n))
            loss = segment_loss(member, data.subset(idx), self.noise)
            l2 = sum((p ** 2).sum() for name, p in member.named_parameters() if name.endswith("weight"))
            opt.zero_grad()
            (loss + self.l2 * l2).backward()
            opt.step()

    def accuracy(self, data: PairData) -> float:
        """Share of decided comparisons the ensemble mean orders like the labels."""
        d = (self.member_returns(data.a) - self.member_returns(data.b)).mean(0)  # (N,)
        decided = data.mu != 0.5
        if not decided.any():
            return float("nan")
        return float(((d > 0) == (data.mu > 0.5))[decided].float().mean())

