"""A trivial environment and dataset for the offline tests: 10 steps; action 1 earns reward
1 (and costs 1), action 0 earns nothing; the return is the number of 1s played."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlhfkit.offline.dataset import DatasetInfo, Episode, OfflineDataset, References


class CountEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.asarray([self.t / 10.0, 1.0], np.float32)

    def step(self, action):
        self.t += 1
        return self._obs(), float(action), False, self.t >= 10, {"cost": float(action)}


def count_dataset(n: int = 120, seed: int = 0) -> OfflineDataset:
    """Episodes whose policy plays 1 with a per-episode probability, so returns span 0..10."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        p = rng.uniform()
        acts = (rng.uniform(size=10) < p).astype(np.int64)
        obs = np.stack([[t / 10.0, 1.0] for t in range(11)]).astype(np.float32)
        trunc = np.zeros(10, bool)
        trunc[-1] = True
        eps.append(Episode(obs, acts, acts.astype(np.float32), acts.astype(np.float32), np.zeros(10, bool), trunc))
    info = DatasetInfo("CountEnv", True, 2, 2, 10, References(0.0, 10.0))
    return OfflineDataset(info, "mixed", eps)


