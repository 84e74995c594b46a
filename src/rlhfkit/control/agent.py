"""The policy: a stable-baselines3 agent trained on the predicted reward.

One rule for every environment, no per-task tuning: PPO for Discrete actions, SAC for Box
actions (PPO needs around a million steps on Pendulum; SAC needs tens of thousands). An
off-policy agent keeps old transitions in its replay buffer, so after each reward-model
update `relabel` rewrites their rewards with the current estimate (the reward is r(o, a),
and the buffer holds both).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rlhfkit.control.envs import SpaceInfo, features

# Generic defaults (SB3's own, PPO with a shorter rollout so updates start sooner).
PPO_DEFAULTS: dict[str, Any] = {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4,
                                "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.0}
SAC_DEFAULTS: dict[str, Any] = {"learning_rate": 3e-4, "buffer_size": 300_000, "batch_size": 256,
                                "gamma": 0.99, "learning_starts": 1000,
                                "policy_kwargs": {"net_arch": [64, 64]}}
DEFAULT_TIMESTEPS = {"ppo": 50_000, "sac": 15_000, "a2c": 50_000}


def pick_algo(algo: str, info: SpaceInfo) -> str:
    if algo != "auto":
        if algo == "sac" and info.discrete:
            raise ValueError("SAC needs a Box action space")
        return algo
    return "ppo" if info.discrete else "sac"


def make_agent(algo: str, env: gym.Env, seed: int, overrides: dict[str, Any] | None = None):
    """A fresh SB3 agent on `env` (MlpPolicy, single thread)."""
    from stable_baselines3 import A2C, PPO, SAC

    cls = {"ppo": PPO, "sac": SAC, "a2c": A2C}[algo]
    kwargs = {"ppo": PPO_DEFAULTS, "sac": SAC_DEFAULTS, "a2c": {}}[algo] | (overrides or {})
    # a deep copy: SB3 writes into policy_kwargs (it adds use_sde), which would change the module's
    # defaults and the caller's settings (the offline dataset cache compares them)
    kwargs = copy.deepcopy(kwargs)
    return cls("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **kwargs)


def relabel(agent, info: SpaceInfo, reward_fn: Callable[[np.ndarray], np.ndarray]) -> int:
    """Rewrite the replay buffer's rewards with `reward_fn` (no-op for on-policy agents).
    SB3 stores Box actions scaled to [-1, 1]; they are mapped back to the env's bounds."""
    buf = getattr(agent, "replay_buffer", None)
    if buf is None:
        return 0
    n = buf.buffer_size if buf.full else buf.pos
    if n == 0:
        return 0
    obs = buf.observations[:n].reshape(n * buf.n_envs, -1)  # (N, O)
    acts = buf.actions[:n].reshape(n * buf.n_envs, -1)  # (N, A) in [-1, 1]
    if not info.discrete:
        acts = info.act_low + 0.5 * (acts + 1.0) * (info.act_high - info.act_low)
    r = reward_fn(features(info, obs, acts))  # (N,)
    buf.rewards[:n] = r.reshape(n, buf.n_envs).astype(buf.rewards.dtype)
    return n * buf.n_envs


def evaluate(agent, env: gym.Env, episodes: int, seed: int) -> np.ndarray:
    """True returns of the deterministic policy over `episodes` episodes: (episodes,)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return np.asarray(returns)


def random_returns(env: gym.Env, episodes: int, seed: int) -> np.ndarray:
    """True returns of the uniform random policy: (episodes,)."""
    env.action_space.seed(seed)
    out = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total += float(r)
            done = term or trunc
        out.append(total)
    return np.asarray(out)
