"""TAMER: an agent shaped by a human's scalar reinforcement (Knox & Stone 2009).

The human watches the agent act and now and then presses + or -. TAMER treats
these signals as samples of a function H(s, a) ("how much would the trainer approve
of a in s?"), fits a model H_hat(s, a) = w . phi(s, a) by online regression, and acts
greedily: a = argmax_a H_hat(s, a). There is no discounting and no value
bootstrapping: the trainer's signal already accounts for the future.

Credit assignment (Knox & Stone 2009, sec. 4.2): a press at time t_f refers to
something the agent did a moment earlier, with a human reaction delay d drawn from
a density f (uniform on [0.2 s, 4 s] in the paper). Step t, shown during
[t_start, t_end), receives credit

    c_t = P(t_f - t_end < d <= t_f - t_start) = integral of f over that interval,

and each credited step moves the model toward the signal:

    w <- w + alpha * c_t * (h - H_hat(s_t, a_t)) * phi(s_t, a_t).

`SimulatedTrainer` stands in for the human in tests: it judges each action against
an oracle policy, and (with some probability) presses +1 or -1 after a random delay.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.imitation.bc import Policy, make_env

FeatureFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class TamerConfig:
    """TAMER's regression model, credit window and clock."""

    lr: float = F(0.2, "step size alpha of the H_hat regression (divided by ||phi||^2: normalized LMS)")
    delay_min: float = F(0.2, "shortest human reaction delay in seconds (uniform credit density)")
    delay_max: float = F(0.8, "longest human reaction delay in seconds")
    step_seconds: float = F(0.1, "wall-clock seconds each step is shown to the trainer")


def uniform_delay_credit(t_f: float, t_start: float, t_end: float, lo: float, hi: float) -> float:
    """P(t_f - t_end < d <= t_f - t_start) for d ~ Uniform[lo, hi] (the credit of one step)."""
    if hi <= lo:
        raise UserError(f"delay_max ({hi}) must exceed delay_min ({lo})")
    a, b = max(t_f - t_end, lo), min(t_f - t_start, hi)
    return max(0.0, b - a) / (hi - lo)


def one_hot_features(n_states: int) -> FeatureFn:
    """phi(s) = e_s for a discrete state (a tabular H_hat)."""
    eye = np.eye(n_states)
    return lambda s: eye[int(np.asarray(s).reshape(-1)[0])]


def scaled_linear_features(scale: np.ndarray) -> FeatureFn:
    """phi(s) = [s / scale, 1]: a linear H_hat per action over roughly unit-scale inputs."""
    scale = np.asarray(scale, dtype=np.float64)
    return lambda s: np.append(np.asarray(s, dtype=np.float64).reshape(-1) / scale, 1.0)


# CartPole-v1's observation bounds (cart position and pole angle at termination; typical velocities).
CARTPOLE_SCALE = np.array([2.4, 2.0, 0.21, 2.0])


class TamerAgent:
    """H_hat(s, a) = w_a . phi(s) (one weight vector per action); greedy on H_hat."""

    def __init__(self, features: FeatureFn, n_features: int, n_actions: int, cfg: TamerConfig | None = None,
                 seed: int = 0) -> None:
        self.cfg = cfg or TamerConfig()
        self.features = features
        self.w = np.zeros((n_actions, n_features))  # (A, F)
        self.rng = np.random.default_rng(seed)
        # (phi, action, t_start, t_end) of steps still inside the credit window
        self.history: deque[tuple[np.ndarray, int, float, float]] = deque()
        self.updates = 0

    def h_values(self, obs: np.ndarray) -> np.ndarray:
        return self.w @ self.features(obs)  # (A,)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy on H_hat for each row of a batch (B, ...); ties broken at random."""
        batch = np.asarray(obs)
        batch = batch[None] if batch.ndim <= 1 else batch
        out = []
        for o in batch:
            h = self.h_values(o)
            out.append(int(self.rng.choice(np.flatnonzero(h >= h.max() - 1e-12))))
        return np.asarray(out, dtype=np.int64)  # (B,)

    def record(self, obs: np.ndarray, action: int, t_start: float) -> None:
        """Remember a step shown during [t_start, t_start + step_seconds) for later credit."""
        self.history.append((self.features(obs), int(action), t_start, t_start + self.cfg.step_seconds))
        while self.history and self.history[0][3] < t_start - self.cfg.delay_max:
            self.history.popleft()

    def feedback(self, h: float, t_f: float) -> float:
        """Spread the signal h, given at time t_f, over recent steps; returns the credit used."""
        total = 0.0
        for phi, a, t0, t1 in self.history:
            c = uniform_delay_credit(t_f, t0, t1, self.cfg.delay_min, self.cfg.delay_max)
            if c <= 0.0:
                continue
            err = h - float(self.w[a] @ phi)
            self.w[a] += self.cfg.lr * c * err * phi / max(float(phi @ phi), 1e-8)
            total += c
        self.updates += total > 0
        return total


@dataclass
class SimulatedTrainer:
    """Judges each action against an oracle: +1 if it matches, -1 if not, sent after a delay.

    `p_feedback` is the chance a step gets judged at all; delays are uniform on
    [delay_min, delay_max] seconds, like the credit density the agent assumes."""

    oracle: Policy
    p_feedback: float = 0.5
    delay_min: float = 0.2
    delay_max: float = 0.8
    seed: int = 0
    pending: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def watch(self, obs: np.ndarray, action: int, t: float) -> None:
        if self.rng.random() < self.p_feedback:
            good = int(self.oracle.act(np.asarray(obs)[None])[0]) == int(action)
            self.pending.append((t + self.rng.uniform(self.delay_min, self.delay_max), 1.0 if good else -1.0))

    def due(self, now: float) -> list[tuple[float, float]]:
        """(time, signal) of presses that have happened by `now`, oldest first."""
        ready = sorted(p for p in self.pending if p[0] <= now)
        self.pending = [p for p in self.pending if p[0] > now]
        return ready


def train_tamer(agent: TamerAgent, trainer: SimulatedTrainer, env: str | Any, episodes: int, seed: int = 0,
                max_steps: int | None = None) -> list[float]:
    """Let the agent act for `episodes` episodes under the trainer's feedback; returns their returns.

    `env` is a Gymnasium id or an env object (which the caller keeps and closes)."""
    owned = isinstance(env, str)
    env = make_env(env) if owned else env
    dt = agent.cfg.step_seconds
    clock, returns = 0.0, []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, ret, steps = False, 0.0, 0
        while not done and (max_steps is None or steps < max_steps):
            a = int(agent.act(obs)[0])
            agent.record(obs, a, clock)
            trainer.watch(obs, a, clock)
            obs, r, terminated, truncated, _ = env.step(a)
            ret, steps, done = ret + float(r), steps + 1, terminated or truncated
            clock += dt
            for t_f, h in trainer.due(clock):
                agent.feedback(h, t_f)
        returns.append(ret)
        clock += agent.cfg.delay_max  # a pause between episodes: late presses still land on this one
        for t_f, h in trainer.due(clock):
            agent.feedback(h, t_f)
        agent.history.clear()
    if owned:
        env.close()
    return returns
