"""Windows of K steps cut from episodes: what the Decision Transformer trains on.

A window holds, per step, the state, the action taken, the return-to-go and cost-to-go
before acting, and the timestep within the episode (Chen et al. 2021, sec. 3; Liu et al.
2023, sec. 4.1). Episodes are drawn in proportion to their length and the window starts
uniformly inside the episode (the reference implementation's sampler), so a window
that runs past the episode's end is shorter than K: it is right-padded and `mask` is 0
there. Right padding needs no attention mask: attention is causal, so a real step never
looks at a pad after it, and pads are left out of the loss.

Each window comes from a *view* of an episode: the episode plus offsets added to its
return-to-go and cost-to-go. Plain training uses offsets of 0; the Constrained DT's return
relabelling (`offline/relabel.py`) adds views that start from other targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlhfkit.offline.dataset import OfflineDataset, to_go


@dataclass(frozen=True)
class Normalizer:
    """State standardization and return/cost scaling, fitted on the training data and saved
    with the model (evaluation must scale the same way)."""

    state_mean: np.ndarray  # (obs_dim,)
    state_std: np.ndarray  # (obs_dim,)
    return_scale: float
    cost_scale: float

    @classmethod
    def fit(cls, data: OfflineDataset) -> "Normalizer":
        obs = np.concatenate([e.observations[:-1] for e in data.episodes]).astype(np.float64)
        returns = np.abs(data.returns).max()
        costs = data.episode_costs.max()
        return cls(obs.mean(0).astype(np.float32), (obs.std(0) + 1e-6).astype(np.float32),
                   float(returns) if returns > 0 else 1.0, float(costs) if costs > 0 else 1.0)

    def states(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.state_mean) / self.state_std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"state_mean": self.state_mean.tolist(), "state_std": self.state_std.tolist(),
                "return_scale": self.return_scale, "cost_scale": self.cost_scale}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["state_mean"], dtype=np.float32), np.asarray(d["state_std"], dtype=np.float32),
                   float(d["return_scale"]), float(d["cost_scale"]))


@dataclass(frozen=True)
class TrajectoryBatch:
    """B windows of K steps, right-padded (`mask` 0 on padding)."""

    states: torch.Tensor  # (B, K, obs_dim) standardized
    actions: torch.Tensor  # (B, K, act_dim) float, or (B, K) long for discrete actions
    returns_to_go: torch.Tensor  # (B, K) divided by return_scale
    costs_to_go: torch.Tensor  # (B, K) divided by cost_scale
    timesteps: torch.Tensor  # (B, K) long, the step's index in its episode
    mask: torch.Tensor  # (B, K) float

    def __post_init__(self) -> None:
        b, k = self.mask.shape
        assert self.states.shape[:2] == (b, k) and self.actions.shape[:2] == (b, k)
        assert self.returns_to_go.shape == self.costs_to_go.shape == self.timesteps.shape == (b, k)


@dataclass(frozen=True)
class View:
    """An episode seen with its return-to-go and cost-to-go shifted (0 = as recorded)."""

    episode: int
    return_offset: float = 0.0
    cost_offset: float = 0.0
    weight: float = 1.0  # windows are drawn from a view in proportion to weight x episode length


class WindowSampler:
    """Draws `TrajectoryBatch`es from a dataset, reproducibly from `seed`."""

    def __init__(self, data: OfflineDataset, context: int, norm: Normalizer, seed: int = 0,
                 views: list[View] | None = None) -> None:
        if context < 1:
            raise ValueError(f"context must be at least 1, got {context}")
        self.data, self.context, self.norm = data, context, norm
        self.discrete = data.info.discrete
        eps = data.episodes
        self.states = [norm.states(e.observations[:-1]) for e in eps]
        self.rtg = to_go([e.rewards for e in eps])
        self.ctg = to_go([e.costs for e in eps])
        self.views = views if views is not None else [View(i) for i in range(len(eps))]
        lengths = np.asarray([len(eps[v.episode]) * v.weight for v in self.views], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size: int) -> TrajectoryBatch:
        k, eps = self.context, self.data.episodes
        obs_dim = self.states[0].shape[1]
        act_shape = () if self.discrete else eps[0].actions.shape[1:]
        s = np.zeros((batch_size, k, obs_dim), np.float32)
        a = np.zeros((batch_size, k, *act_shape), np.int64 if self.discrete else np.float32)
        r = np.zeros((batch_size, k), np.float32)
        c = np.zeros((batch_size, k), np.float32)
        t = np.zeros((batch_size, k), np.int64)
        m = np.zeros((batch_size, k), np.float32)
        for b, vi in enumerate(self.rng.choice(len(self.views), size=batch_size, p=self.p)):
            v = self.views[vi]
            n = len(eps[v.episode])
            start = int(self.rng.integers(n))
            end = min(start + k, n)
            w = end - start
            s[b, :w] = self.states[v.episode][start:end]
            a[b, :w] = eps[v.episode].actions[start:end]
            r[b, :w] = (self.rtg[v.episode][start:end] + v.return_offset) / self.norm.return_scale
            c[b, :w] = (self.ctg[v.episode][start:end] + v.cost_offset) / self.norm.cost_scale
            t[b, :w] = np.arange(start, end)
            m[b, :w] = 1.0
        return TrajectoryBatch(torch.from_numpy(s), torch.from_numpy(a), torch.from_numpy(r),
                               torch.from_numpy(c), torch.from_numpy(t), torch.from_numpy(m))
