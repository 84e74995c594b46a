"""Trajectories, fixed-length segments and the recorder that collects them from the agent's
own experience (Christiano et al. 2017, sec. 2.2: clips of the agent's behaviour are compared).

Segments have a fixed length k so that summed rewards are comparable. A segment may run
past a *terminated* episode's last step; the missing steps are absorbing steps (true
reward 0, see `envs.py`), so on CartPole a clip where the pole falls after 12 steps
carries 12 points of true return against 50 for a clip where it stays up. A *truncated*
episode (time limit) is not padded: the task did not end there, only the recording did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from rlhfkit.control.envs import SpaceInfo, features
from rlhfkit.errors import UserError


@dataclass
class Trajectory:
    """One episode: obs[t] is the observation action[t] was taken in; rewards are the true ones
    (kept for the synthetic labeler and the report, never shown to the agent)."""

    obs: np.ndarray  # (T, O)
    actions: np.ndarray  # (T,) or (T, A)
    true_rewards: np.ndarray  # (T,)
    terminated: bool
    reset_seed: int | None = None  # with the actions, replays the episode for rendering

    def __len__(self) -> int:
        return int(self.true_rewards.shape[0])


@dataclass
class Segment:
    """k steps of one trajectory from `start`; steps past a terminated episode's end are absorbing."""

    traj: Trajectory
    start: int
    length: int
    x: np.ndarray = field(repr=False)  # (k, F) reward-model features
    true_return: float = 0.0

    @property
    def real_steps(self) -> int:
        return max(0, min(self.length, len(self.traj) - self.start))


def make_segment(info: SpaceInfo, traj: Trajectory, start: int, k: int) -> Segment:
    """Cut steps [start, start + k) of `traj`, padding with absorbing steps past its end."""
    end = min(start + k, len(traj))
    n_real, n_pad = end - start, k - (end - start)
    if n_pad > 0 and not traj.terminated:
        raise ValueError("only terminated episodes are padded")
    obs = traj.obs[start:end]  # (n_real, O)
    acts = traj.actions[start:end]
    flag = np.zeros(n_real, dtype=np.float32)
    if n_pad:
        obs = np.concatenate([obs, np.zeros((n_pad, info.obs_dim), dtype=np.float32)])
        pad_act = np.zeros((n_pad,) + acts.shape[1:], dtype=acts.dtype)
        if not info.discrete:
            pad_act = np.repeat(info.act_low[None], n_pad, axis=0)  # any valid action; masked out
        acts = np.concatenate([acts, pad_act])
        flag = np.concatenate([flag, np.ones(n_pad, dtype=np.float32)])
    x = features(info, obs, acts, flag)  # (k, F)
    true_return = float(traj.true_rewards[start:end].sum())  # absorbing steps: true reward 0
    return Segment(traj=traj, start=start, length=k, x=x, true_return=true_return)


def sample_segments(info: SpaceInfo, trajs: list[Trajectory], n: int, k: int,
                    rng: np.random.Generator) -> list[Segment]:
    """n segments; a trajectory is drawn in proportion to its number of valid start steps.
    Terminated episodes may start anywhere (padding covers the end); truncated ones must
    hold k real steps."""
    starts = [len(t) if t.terminated else max(0, len(t) - k + 1) for t in trajs]
    total = sum(starts)
    if total == 0:
        raise UserError(f"no episode is long enough for segments of {k} steps; lower segment_length")
    p = np.asarray(starts, dtype=np.float64) / total
    picks = rng.choice(len(trajs), size=n, p=p)
    return [make_segment(info, trajs[i], int(rng.integers(starts[i])), k) for i in picks]


class EpisodeRecorder(gym.Wrapper):
    """Records every finished episode (observations, actions, true rewards) and hands the
    agent `reward_fn(obs, action)` instead of the true reward (None: reward 0).

    Each reset without a seed draws one from the recorder's generator, so any recorded
    episode can be replayed exactly in a deterministic environment (for clip rendering).
    """

    def __init__(self, env: gym.Env, seed: int = 0, reward_fn=None) -> None:
        super().__init__(env)
        self.reward_fn = reward_fn
        self.episodes: list[Trajectory] = []
        self._rng = np.random.default_rng(seed)
        self._obs: list[np.ndarray] = []
        self._acts: list[np.ndarray] = []
        self._rews: list[float] = []
        self._last_obs: np.ndarray | None = None
        self._seed: int | None = None
        self.total_steps = 0

    def reset(self, *, seed: int | None = None, options=None):
        self._seed = int(self._rng.integers(2**31 - 1)) if seed is None else seed
        obs, info = self.env.reset(seed=self._seed, options=options)
        self._obs, self._acts, self._rews = [], [], []
        self._last_obs = np.asarray(obs, dtype=np.float32)
        return obs, info

    def step(self, action):
        obs, true_r, terminated, truncated, info = self.env.step(action)
        prev = self._last_obs
        self._obs.append(prev)
        self._acts.append(np.asarray(action))
        self._rews.append(float(true_r))
        self._last_obs = np.asarray(obs, dtype=np.float32)
        self.total_steps += 1
        reward = 0.0 if self.reward_fn is None else float(self.reward_fn(prev[None], np.asarray(action)[None])[0])
        if terminated or truncated:
            self.episodes.append(Trajectory(np.stack(self._obs), np.stack(self._acts), np.asarray(self._rews),
                                            bool(terminated), self._seed))
            self._obs, self._acts, self._rews = [], [], []
        return obs, reward, terminated, truncated, info

    def pop_episodes(self) -> list[Trajectory]:
        out, self.episodes = self.episodes, []
        return out


def random_rollouts(env: gym.Env, n_steps: int, seed: int) -> list[Trajectory]:
    """Episodes of the uniform random policy (the paper's starting point) until n_steps are done."""
    rec = EpisodeRecorder(env, seed=seed)
    env.action_space.seed(seed)
    rec.reset()
    while rec.total_steps < n_steps or not rec.episodes:
        _, _, term, trunc, _ = rec.step(env.action_space.sample())
        if term or trunc:
            rec.reset()
    return rec.pop_episodes()
