"""Rolling policies out in the environment, many episodes at once.

Every policy here answers the same three calls, so the DT, the CDT, behaviour cloning and
transformers' DecisionTransformerModel are evaluated by the same loop:

    policy.reset(n, target_return, target_cost)   n episodes start
    policy.act(obs) -> actions                     obs (n_alive, obs_dim) as the env gives them
    policy.observe(actions, rewards, costs, keep)  what happened; keep: the episodes still running

The Decision Transformer is told the return to collect; after each step the return-to-go is
lowered by the reward received (Chen et al. 2021, Algorithm 1), and the CDT's cost-to-go by the
cost (Liu et al. 2023, sec. 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import gymnasium as gym
import numpy as np
import torch

from rlhfkit.offline.dt import DecisionTransformer
from rlhfkit.offline.sequence import Normalizer


class Policy(Protocol):
    def reset(self, n: int, target_return: float, target_cost: float | None) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def observe(self, actions: np.ndarray, rewards: np.ndarray, costs: np.ndarray, keep: np.ndarray) -> None: ...


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray  # (episodes,)
    costs: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)


def rollout(make_env: Callable[[], gym.Env], policy: Policy, episodes: int, target_return: float = 0.0,
            target_cost: float | None = None, seed: int = 0) -> EvalResult:
    """Run `episodes` episodes side by side (env i reset with seed + i) until each ends."""
    envs = [make_env() for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    alive = np.arange(episodes)
    ret, cost, length = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    policy.reset(episodes, target_return, target_cost)
    with torch.no_grad():
        while len(alive):
            actions = policy.act(obs)
            nxt, rewards, costs, keep = [], np.zeros(len(alive)), np.zeros(len(alive)), []
            for j, i in enumerate(alive):
                o, r, term, trunc, info = envs[i].step(actions[j])
                rewards[j], costs[j] = r, float(info.get("cost", 0.0))
                if not (term or trunc):
                    keep.append(j)
                    nxt.append(o)
            ret[alive] += rewards
            cost[alive] += costs
            length[alive] += 1
            keep_idx = np.asarray(keep, dtype=np.int64)
            policy.observe(actions, rewards, costs, keep_idx)
            alive = alive[keep_idx]
            obs = np.stack(nxt).astype(np.float32) if nxt else obs[:0]
    for e in envs:
        e.close()
    return EvalResult(ret, cost, length)


class DTPolicy:
    """A trained (C)DT acting with the last K steps of each episode as its context."""

    def __init__(self, model: DecisionTransformer, norm: Normalizer, action_low: np.ndarray | None = None,
                 action_high: np.ndarray | None = None) -> None:
        self.model, self.norm = model.eval(), norm
        self.cfg = model.cfg
        self.low, self.high = action_low, action_high

    def reset(self, n: int, target_return: float, target_cost: float | None) -> None:
        if self.cfg.use_cost and target_cost is None:
            raise ValueError("the Constrained DT needs a target cost (the threshold to keep under)")
        self.s: list[np.ndarray] = []  # each (n_alive, obs_dim), one per step so far
        self.a: list[np.ndarray] = []
        self.r = np.full(n, target_return, dtype=np.float64)  # return-to-go now
        self.c = np.full(n, target_cost or 0.0, dtype=np.float64)
        self.rs: list[np.ndarray] = []
        self.cs: list[np.ndarray] = []
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        k, n = self.cfg.context, len(obs)
        self.s.append(self.norm.states(obs))
        self.rs.append(self.r / self.norm.return_scale)
        self.cs.append(self.c / self.norm.cost_scale)
        w = min(k, len(self.s))
        start = self.t + 1 - w
        states = torch.from_numpy(np.stack(self.s[-w:], 1))  # (n, w, obs_dim)
        prev = self.a[-(w - 1):] if w > 1 else []
        if self.cfg.discrete:
            pad = np.zeros((n,), np.int64)
            actions = torch.from_numpy(np.stack([*prev, pad], 1).astype(np.int64))  # (n, w)
        else:
            pad = np.zeros((n, self.cfg.act_dim), np.float32)
            actions = torch.from_numpy(np.stack([*prev, pad], 1).astype(np.float32))  # (n, w, A)
        rtg = torch.from_numpy(np.stack(self.rs[-w:], 1).astype(np.float32))
        ctg = torch.from_numpy(np.stack(self.cs[-w:], 1).astype(np.float32))
        times = torch.arange(start, self.t + 1).expand(n, w)
        out = self.model(states, actions, rtg, ctg if self.cfg.use_cost else None, times)
        last = out.head[:, -1]
        if self.cfg.discrete:
            return last.argmax(-1).numpy()
        act = last.numpy()
        return np.clip(act, self.low, self.high) if self.low is not None else act

    def observe(self, actions: np.ndarray, rewards: np.ndarray, costs: np.ndarray, keep: np.ndarray) -> None:
        self.a.append(np.asarray(actions))
        self.r = self.r - rewards
        self.c = self.c - costs
        self.t += 1
        # only the last K - 1 steps are read again: drop the rest, and the finished episodes
        k = self.cfg.context
        self.s, self.a = [x[keep] for x in self.s[-k:]], [x[keep] for x in self.a[-k:]]
        self.rs, self.cs = [x[keep] for x in self.rs[-k:]], [x[keep] for x in self.cs[-k:]]
        self.r, self.c = self.r[keep], self.c[keep]
