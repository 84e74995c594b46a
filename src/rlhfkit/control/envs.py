"""Environments: checks, the (observation, action) features the reward model reads, and
the absorbing state that stands in for "after the episode ended".

Gymnasium's CartPole ends an episode when the pole falls, so episodes differ in length.
A segment that runs past the end is padded with an *absorbing* step: a fixed feature
vector (zeros plus a flag) whose true reward is 0. The learned reward of that step,
r_abs, is then subtracted from every reward the agent sees, so ending the episode is
worth exactly what staying in the absorbing state forever would be worth (a constant
shift of all rewards of a fixed-horizon MDP changes no policy's ranking).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlhfkit.errors import UserError


class EnvError(UserError):
    """An environment id that cannot be made or whose spaces are not supported."""


@dataclass(frozen=True)
class SpaceInfo:
    """What the reward model needs to know about an environment's spaces."""

    obs_dim: int
    act_dim: int  # one-hot size for Discrete, vector size for Box
    discrete: bool
    act_low: np.ndarray | None = None  # Box bounds (to scale actions to [-1, 1])
    act_high: np.ndarray | None = None

    @property
    def feature_dim(self) -> int:
        """obs + action + absorbing flag."""
        return self.obs_dim + self.act_dim + 1


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """`gym.make` with a user-facing error for unknown ids or missing extras (MuJoCo)."""
    try:
        return gym.make(env_id, render_mode=render_mode)
    except gym.error.Error as e:
        raise EnvError(f"--env {env_id}: cannot make this environment: {e}") from e
    except ImportError as e:
        raise EnvError(f"--env {env_id}: a package it needs is missing ({e}); "
                       "MuJoCo tasks need `pip install mujoco`") from e


def space_info(env: gym.Env, env_id: str = "") -> SpaceInfo:
    """Refuse spaces the reward model cannot read: Box observations, Discrete or Box actions."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise EnvError(f"--env {env_id}: observation space {obs} is not a flat Box")
    if isinstance(act, gym.spaces.Discrete):
        return SpaceInfo(obs_dim=int(obs.shape[0]), act_dim=int(act.n), discrete=True)
    if isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        return SpaceInfo(obs_dim=int(obs.shape[0]), act_dim=int(act.shape[0]), discrete=False,
                         act_low=act.low.astype(np.float32), act_high=act.high.astype(np.float32))
    raise EnvError(f"--env {env_id}: action space {act} is neither Discrete nor a flat Box")


def encode_actions(info: SpaceInfo, actions: np.ndarray) -> np.ndarray:
    """Actions (N,) ints or (N, A) floats -> (N, act_dim) floats: one-hot, or Box scaled to [-1, 1]."""
    actions = np.asarray(actions)
    n = actions.shape[0]
    if info.discrete:
        out = np.zeros((n, info.act_dim), dtype=np.float32)
        out[np.arange(n), actions.reshape(n).astype(np.int64)] = 1.0
        return out
    low, high = info.act_low, info.act_high
    clipped = np.clip(actions.reshape(n, info.act_dim), low, high)
    return (2.0 * (clipped - low) / (high - low) - 1.0).astype(np.float32)


def features(info: SpaceInfo, obs: np.ndarray, actions: np.ndarray, absorbing: np.ndarray | None = None) -> np.ndarray:
    """Reward-model input rows [obs, encoded action, absorbing flag]; absorbing rows are all
    zeros except the flag, so every padded step shares one learned reward r_abs."""
    obs = np.asarray(obs, dtype=np.float32).reshape(-1, info.obs_dim)  # (N, O)
    acts = encode_actions(info, actions)  # (N, A)
    flag = np.zeros((obs.shape[0], 1), dtype=np.float32) if absorbing is None else \
        np.asarray(absorbing, dtype=np.float32).reshape(-1, 1)  # (N, 1)
    x = np.concatenate([obs * (1.0 - flag), acts * (1.0 - flag), flag], axis=1)  # (N, F)
    return x


def absorbing_features(info: SpaceInfo) -> np.ndarray:
    """The one feature row of the absorbing state: (1, F)."""
    x = np.zeros((1, info.feature_dim), dtype=np.float32)
    x[0, -1] = 1.0
    return x
