"""Environments for offline datasets: a registry of behaviour-policy settings, the cost
wrappers that put `info["cost"]` on every step, the recorder of whole episodes, and a
batched rollout of a policy over several environments.

The costs follow the safe-RL benchmarks the Constrained Decision Transformer is evaluated
on (Liu et al. 2023, "Constrained Decision Transformer for Offline Safe RL"; DSRL):

  velocity     Safety-Gymnasium's velocity tasks (Ji et al. 2023, "Safety-Gymnasium", the
               `safe_velocity` tasks): cost 1 at each step whose forward speed
               `info["x_velocity"]` exceeds the task's threshold (`SAFETY_GYM_VELOCITY`,
               the v1 tasks' values). Its Ant task bounds the planar speed (`planar`).
  observation  a bound on one coordinate of the observation, the classic-control analogue
               (safe-control-gym's `CartPoleStateConstraint`, Yuan et al. 2022, bounds the
               cart's state): cost 1 at each step that lands where |obs[index]| > threshold.
  none         cost 0 everywhere.

The behaviour policy learns the environment's reward only; the cost is recorded, never
optimized, so a reward-greedy expert pays the most cost and the trade-off lives in the data.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from rlhfkit.control.agent import DEFAULT_TIMESTEPS, pick_algo
from rlhfkit.control.envs import EnvError, space_info
from rlhfkit.control.envs import make_env as gym_make
from rlhfkit.logging import progress
from rlhfkit.offline.dataset import Episode

# Velocity thresholds of Safety-Gymnasium's v1 velocity tasks (safety_gymnasium/tasks/
# safe_velocity/safety_<name>_velocity_v1.py), keyed by the Gymnasium task's name.
SAFETY_GYM_VELOCITY: dict[str, float] = {"Hopper": 0.7402, "HalfCheetah": 3.2096, "Walker2d": 2.3415,
                                         "Ant": 2.6222, "Swimmer": 0.2282, "Humanoid": 1.4149}


@dataclass(frozen=True)
class EnvSpec:
    """How to build a dataset for one environment: the behaviour algorithm (stable-baselines3)
    and its settings, the cost, and the default sizes."""

    env_id: str
    algo: str  # "ppo" (Discrete actions) or "sac" (Box actions)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)  # over control.agent's PPO/SAC defaults
    train_steps: int = 50_000  # env steps the behaviour policy learns for
    cost: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    transitions: int = 20_000  # transitions per collected mixture (random, medium, expert)


# Classic-control costs, chosen from measured datasets (seed 0, default sizes):
# - CartPole: |cart velocity| > 0.3. Each push changes the velocity by ~0.2, so balancing
#   keeps crossing it: the PPO expert pays 1-18 per 500-step episode, medium episodes up to
#   ~190 (a bound on the cart position costs the centred expert nothing, no trade-off).
# - Pendulum: |angular velocity| > 4. Climbing from the bottom needs 0.5 w^2 >= 30 - 6 pi
#   at the bottom (gravity term 3g/2l = 15 over a height of 2, torque term 3u/ml^2 <= 6
#   over pi radians), i.e. |w| >= 4.7: every swing-up pays, so reward trades against cost.
#   The SAC expert pays 0-20 per 200-step episode, the random policy 0-100.
# Hopper etc.: SAC with two 128-unit layers makes ~115 updates/s on one core (256 units:
# ~55/s), so 120k steps train in ~17 minutes; the expert need only be decent.
ENVS: dict[str, EnvSpec] = {spec.env_id: spec for spec in (
    EnvSpec("CartPole-v1", "ppo", {"n_steps": 512, "learning_rate": 1e-3}, 50_000,
            {"name": "observation", "index": 1, "threshold": 0.3, "what": "cart velocity"}, 20_000),
    EnvSpec("Pendulum-v1", "sac", {"learning_starts": 1000}, 12_000,
            {"name": "observation", "index": 2, "threshold": 4.0, "what": "angular velocity"}, 20_000),
    *(EnvSpec(f"{name}-v5", "sac", {"learning_starts": 5000, "buffer_size": 200_000,
                                    "policy_kwargs": {"net_arch": [128, 128]}}, 120_000,
              {"name": "velocity", "threshold": SAFETY_GYM_VELOCITY[name]}, 50_000)
      for name in ("Hopper", "HalfCheetah", "Walker2d")),
)}


def env_name(env_id: str) -> str:
    """`Hopper-v5` -> `Hopper` (the task's name without namespace or version)."""
    return re.sub(r"-v\d+$", "", env_id.split("/")[-1])


def spec_for(env_id: str) -> EnvSpec:
    """The registry's spec, or defaults for any other Gymnasium id: PPO for Discrete actions,
    SAC for Box actions, no cost, the control wing's training steps."""
    if env_id in ENVS:
        return ENVS[env_id]
    env = gym_make(env_id)
    try:
        algo = pick_algo("auto", space_info(env, env_id))
    finally:
        env.close()
    return EnvSpec(env_id, algo, {}, DEFAULT_TIMESTEPS[algo])


def dataset_spaces(env: gym.Env, env_id: str) -> dict[str, Any]:
    """The `DatasetInfo` fields that describe the spaces of `env`."""
    act, obs = env.action_space, env.observation_space
    discrete = isinstance(act, gym.spaces.Discrete)
    return {"env_id": env_id, "discrete": discrete, "obs_dim": int(np.prod(obs.shape)),
            "act_dim": int(act.n) if discrete else int(np.prod(act.shape)),
            "max_episode_steps": int(env.spec.max_episode_steps or 0) if env.spec else 0,
            "action_low": None if discrete else act.low.astype(float).tolist(),
            "action_high": None if discrete else act.high.astype(float).tolist()}


class CostWrapper(gym.Wrapper):
    """Puts `info["cost"]` (a float, 0 or 1) on every step; the reward is left alone."""

    name = "none"

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "cost": float(self.cost(obs, info))}
        return obs, reward, terminated, truncated, info

    def cost(self, obs: np.ndarray, info: dict[str, Any]) -> float:
        return 0.0

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}


class VelocityCost(CostWrapper):
    """Safety-Gymnasium's velocity cost: 1 when the forward speed exceeds `threshold`
    (`planar`: the speed in the x-y plane, as its Ant task)."""

    name = "velocity"

    def __init__(self, env: gym.Env, threshold: float, planar: bool = False) -> None:
        super().__init__(env)
        self.threshold, self.planar = float(threshold), bool(planar)

    def cost(self, obs: np.ndarray, info: dict[str, Any]) -> float:
        if "x_velocity" not in info:
            raise EnvError(f"{self.env.spec.id if self.env.spec else self.env}: the velocity cost reads "
                           "info['x_velocity'], which this environment does not report")
        v = float(info["x_velocity"])
        if self.planar:
            v = float(np.hypot(v, float(info.get("y_velocity", 0.0))))
        return float(v > self.threshold)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold, "planar": self.planar}


class ObservationCost(CostWrapper):
    """Cost 1 when the step lands where |obs[index]| > threshold (a state constraint)."""

    name = "observation"

    def __init__(self, env: gym.Env, index: int, threshold: float, what: str = "") -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        if not shape or not 0 <= int(index) < shape[0]:
            raise EnvError(f"observation cost: index {index} is outside the observation (shape {shape})")
        self.index, self.threshold, self.what = int(index), float(threshold), what

    def cost(self, obs: np.ndarray, info: dict[str, Any]) -> float:
        return float(abs(float(np.asarray(obs)[self.index])) > self.threshold)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "threshold": self.threshold, "what": self.what}


COST_WRAPPERS: dict[str, type[CostWrapper]] = {"none": CostWrapper, "velocity": VelocityCost,
                                               "observation": ObservationCost}


def resolve_cost(env_id: str, cost: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cost settings to use: `cost` (missing settings filled in), or the spec's default."""
    if not cost:
        return dict(spec_for(env_id).cost)
    cost = dict(cost)
    name = cost.get("name")
    if name not in COST_WRAPPERS:
        raise EnvError(f"cost {cost}: 'name' must be one of {', '.join(COST_WRAPPERS)}")
    if name == "velocity" and "threshold" not in cost:
        base = env_name(env_id)
        if base not in SAFETY_GYM_VELOCITY:
            raise EnvError(f"velocity cost for {env_id}: give a threshold (Safety-Gymnasium has one only for "
                           f"{', '.join(SAFETY_GYM_VELOCITY)})")
        cost["threshold"] = SAFETY_GYM_VELOCITY[base]
    return cost


def make_env(env_id: str, cost: dict[str, Any] | None = None, render_mode: str | None = None) -> CostWrapper:
    """`gym.make(env_id)` wrapped in its cost wrapper (`cost`: settings as in `resolve_cost`,
    e.g. `DatasetInfo.cost`; None = the registry's default for `env_id`)."""
    settings = resolve_cost(env_id, cost)
    env = gym_make(env_id, render_mode=render_mode)
    args = {k: v for k, v in settings.items() if k != "name"}
    try:
        return COST_WRAPPERS[settings["name"]](env, **args)
    except TypeError as e:
        raise EnvError(f"cost {settings}: {e}") from e


class RecordEpisodes(gym.Wrapper):
    """Records every finished episode (observations, actions, rewards, costs, terminations,
    truncations), stamped with the env step it ended at. An episode cut off by the end of
    training (no reset, no end) is never recorded."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.episodes: list[Episode] = []
        self.end_steps: list[int] = []  # env steps taken when each episode ended
        self.total_steps = 0
        self._buf: dict[str, list] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._buf = {"obs": [np.asarray(obs, dtype=np.float32)], "act": [], "rew": [], "cost": [],
                     "term": [], "trunc": []}
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total_steps += 1
        b = self._buf
        b["obs"].append(np.asarray(obs, dtype=np.float32))
        b["act"].append(np.asarray(action).reshape(()) if self.discrete else np.asarray(action).reshape(-1))
        b["rew"].append(float(reward))
        b["cost"].append(float(info.get("cost", 0.0)))
        b["term"].append(bool(terminated))
        b["trunc"].append(bool(truncated))
        if terminated or truncated:
            self.episodes.append(Episode(
                np.stack(b["obs"]), np.stack(b["act"]).astype(np.int64 if self.discrete else np.float32),
                np.asarray(b["rew"], np.float32), np.asarray(b["cost"], np.float32),
                np.asarray(b["term"], bool), np.asarray(b["trunc"], bool)))
            self.end_steps.append(self.total_steps)
        return obs, reward, terminated, truncated, info


def rollout(make: Callable[[], gym.Env], act: Callable[[np.ndarray], np.ndarray], *, seed: int,
            transitions: int = 0, episodes: int = 0, n_envs: int = 8, desc: str = "") -> list[Episode]:
    """Whole episodes of the policy `act` (a batch of observations -> a batch of actions),
    stepping up to `n_envs` environments side by side so the policy runs once per batch.

    Either `episodes` (exactly that many) or `transitions` (episodes are started until the
    finished ones hold that many steps; those under way then run to their end, so no episode is
    cut and the total may overshoot by less than an episode per environment)."""
    if (transitions > 0) == (episodes > 0):
        raise ValueError("rollout needs exactly one of transitions or episodes")
    n = max(1, min(n_envs, episodes) if episodes else n_envs)
    envs = [RecordEpisodes(make()) for _ in range(n)]
    obs = {i: e.reset(seed=seed + i)[0] for i, e in enumerate(envs)}
    started, done_steps, finished = n, 0, []
    with progress(total=episodes or transitions, desc=desc) as bar:
        while obs:
            ids = sorted(obs)
            actions = act(np.stack([np.asarray(obs[i], dtype=np.float32) for i in ids]))
            for j, i in enumerate(ids):
                o, _, terminated, truncated, _ = envs[i].step(actions[j])
                obs[i] = o
                if not (terminated or truncated):
                    continue
                ep = envs[i].episodes[-1]
                finished.append(ep)
                done_steps += len(ep)
                bar.update(1 if episodes else len(ep))
                more = started < episodes if episodes else done_steps < transitions
                if more:
                    obs[i] = envs[i].reset()[0]
                    started += 1
                else:
                    del obs[i]
    for e in envs:
        e.close()
    return finished


def random_policy(space: gym.Space, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Uniform random actions, one per observation in the batch."""
    space = copy.deepcopy(space)  # seeding it must not touch the environment's own space
    space.seed(seed)
    return lambda obs: np.stack([space.sample() for _ in range(len(obs))])
