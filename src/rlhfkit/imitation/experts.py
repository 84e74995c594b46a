"""Experts that demonstrate and label: a scripted CartPole controller and SB3 PPO experts.

An *expert* is anything with `act(obs) -> actions` on a batch of observations
(deterministic). Behaviour cloning reads its demonstrations; DAgger asks it to
label the states the learner visits (Ross et al. 2011, Algorithm 3.1).

- `LinearController`: a = 1[w . s > 0]. With the default gains it balances
  CartPole-v1 for the full 500 steps from every start state we tried. It costs
  nothing to build, so tests use it.
- `ppo_expert(env_id)`: stable-baselines3 PPO trained on the environment's true
  reward, cached on disk (`expert_cache_dir()`), so tests, benchmarks and the CLI
  train it once per machine and reuse it afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger

log = get_logger(__name__)

# Gains for CartPole-v1 observations (x, x_dot, theta, theta_dot): push right when
# the pole falls right, damped by its angular velocity, with a weak pull to the centre.
CARTPOLE_GAINS = (0.1, 0.5, 10.0, 2.0)

# PPO settings that solve each task on a CPU in a few minutes (close to the
# rl-baselines3-zoo tuned values; Acrobot with fewer steps and no VecNormalize so
# that the expert is a plain function of the raw observation).
PPO_SETTINGS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_envs=8, timesteps=100_000, target=475.0,
                        kwargs=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                                    ent_coef=0.0, learning_rate=1e-3, clip_range=0.2)),
    "Acrobot-v1": dict(n_envs=16, timesteps=300_000, target=-100.0,
                       kwargs=dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0)),
    "LunarLander-v3": dict(n_envs=16, timesteps=1_000_000, target=200.0,
                           kwargs=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999,
                                       n_epochs=4, ent_coef=0.01)),
}


class ExpertError(UserError):
    """An expert could not be built or trained for the requested environment."""


class Expert(Protocol):
    """Maps a batch of observations (B, obs_dim) to discrete actions (B,)."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LinearController:
    """a = 1 if w . s + b > 0 else 0 (a bang-bang linear controller for two actions)."""

    weights: tuple[float, ...] = CARTPOLE_GAINS
    bias: float = 0.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))  # (B, D)
        if obs.shape[1] != len(self.weights):
            raise ValueError(f"LinearController: observations have {obs.shape[1]} dims, weights {len(self.weights)}")
        return (obs @ np.asarray(self.weights) + self.bias > 0).astype(np.int64)  # (B,)


class SB3Expert:
    """Wraps a stable-baselines3 model: deterministic (greedy) actions."""

    def __init__(self, model: Any, path: Path | None = None) -> None:
        self.model = model
        self.path = path

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))  # (B, D)
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(-1)  # (B,)


def expert_cache_dir() -> Path:
    """`$RLHFKIT_CACHE/experts`, else `$XDG_CACHE_HOME/rlhfkit/experts`, else `~/.cache/rlhfkit/experts`."""
    root = os.environ.get("RLHFKIT_CACHE")
    if root:
        return Path(root) / "experts"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "rlhfkit" / "experts"


def ppo_expert_path(env_id: str, seed: int = 0) -> Path:
    return expert_cache_dir() / f"{env_id}-ppo-seed{seed}.zip"


def ppo_expert(env_id: str, seed: int = 0, retrain: bool = False, max_attempts: int = 3) -> SB3Expert:
    """Load the cached PPO expert for `env_id`, training (and caching) it first if needed.

    Training retries with the next seed when the greedy policy misses the task's
    target return, so a cached expert is always a good one.
    """
    path = ppo_expert_path(env_id, seed)
    if path.exists() and not retrain:
        from stable_baselines3 import PPO

        return SB3Expert(PPO.load(str(path), device="cpu"), path)
    if env_id not in PPO_SETTINGS:
        raise ExpertError(f"no PPO settings for {env_id!r}; known: {sorted(PPO_SETTINGS)}")
    target = PPO_SETTINGS[env_id]["target"]
    for attempt in range(max_attempts):
        model = _train_ppo(env_id, seed + attempt)
        expert = SB3Expert(model, path)
        score = float(np.mean(evaluate_expert(expert, env_id, episodes=10, seed=10_000)))
        log.info("PPO expert for %s (training seed %d): greedy return %.1f (target %.1f)",
                 env_id, seed + attempt, score, target)
        if score >= target:
            from rlhfkit.runtime import atomic_path

            with atomic_path(path) as tmp:
                model.save(str(tmp.with_suffix(".zip")))
                tmp.with_suffix(".zip").replace(tmp)
            return expert
    raise ExpertError(f"PPO did not reach return {target} on {env_id} in {max_attempts} attempts")


def _train_ppo(env_id: str, seed: int) -> Any:
    """PPO (Schulman et al. 2017) on the true reward, with stable-baselines3."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError as e:  # pragma: no cover - the control extra is missing
        raise ExpertError("the PPO expert needs stable-baselines3: pip install 'rlhfkit[control]'") from e
    settings = PPO_SETTINGS[env_id]
    log.info("training a PPO expert on %s for %d steps (cached afterwards)", env_id, settings["timesteps"])
    venv = make_vec_env(env_id, n_envs=settings["n_envs"], seed=seed)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **settings["kwargs"])
    model.learn(total_timesteps=settings["timesteps"])
    return model


def evaluate_expert(expert: Expert, env_id: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of the expert's greedy policy."""
    from rlhfkit.imitation.bc import rollout

    return [traj.ret for traj in (rollout(env_id, expert, seed=seed + i) for i in range(episodes))]


def make_expert(name: str, env_id: str, seed: int = 0) -> Expert:
    """`linear` (CartPole only, instant) or `ppo` (cached SB3 PPO)."""
    if name == "linear":
        if env_id != "CartPole-v1":
            raise ExpertError(f"the scripted linear expert only knows CartPole-v1, not {env_id!r}")
        return LinearController()
    if name == "ppo":
        return ppo_expert(env_id, seed)
    raise ExpertError(f"unknown expert {name!r}: use 'linear' or 'ppo'")
