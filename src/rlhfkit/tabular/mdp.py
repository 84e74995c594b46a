"""Markov process, Markov reward process, MDP and POMDP as small typed objects over numpy arrays.

Conventions (Prince, *Understanding Deep Learning*, ch. 19; Sutton & Barto, ch. 3):
- transitions are row-stochastic: `P[s, s']` for a Markov process, `P[s, a, s']` for an MDP
  (the lecture prints the process matrix column-stochastic, `Pr(s_{t+1} | s_t)` with s_t the
  column: it is our `P.T`);
- rewards are state rewards `R[s]` (received on leaving s, as in the penguin world) or
  state-action rewards `R[s, a]`;
- `features[s]` (S, F) give linear rewards r(s) = features[s] . w for inverse RL;
- `start[s]` is the distribution of s_0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhfkit.errors import UserError


class MDPError(UserError, ValueError):
    """An MDP whose arrays have the wrong shapes or are not probability distributions."""


def _check_stochastic(name: str, arr: np.ndarray, atol: float = 1e-8) -> None:
    if np.any(arr < -atol):
        raise MDPError(f"{name}: probabilities must be non-negative")
    sums = arr.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        bad = np.argwhere(~np.isclose(sums, 1.0, atol=1e-6))[0]
        raise MDPError(f"{name}: rows must sum to 1; row {tuple(int(i) for i in bad)} sums to {sums[tuple(bad)]:.6g}")


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


@dataclass(frozen=True)
class MarkovProcess:
    """States and row-stochastic transitions P[s, s'] = Pr(s_{t+1} = s' | s_t = s)."""

    P: np.ndarray  # (S, S)
    start: np.ndarray | None = None  # (S,)

    def __post_init__(self) -> None:
        P = np.asarray(self.P, dtype=np.float64)
        if P.ndim != 2 or P.shape[0] != P.shape[1]:
            raise MDPError(f"P: expected a square (S, S) matrix, got shape {P.shape}")
        _check_stochastic("P", P)
        object.__setattr__(self, "P", P)
        start = _uniform(P.shape[0]) if self.start is None else np.asarray(self.start, dtype=np.float64)
        if start.shape != (P.shape[0],):
            raise MDPError(f"start: expected shape ({P.shape[0]},), got {start.shape}")
        _check_stochastic("start", start)
        object.__setattr__(self, "start", start)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    def distribution(self, t: int) -> np.ndarray:
        """Pr(s_t) = start^T P^t (exact, by matrix power)."""
        return self.start @ np.linalg.matrix_power(self.P, t)

    def sample(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """A trajectory s_0 .. s_{length-1} of state indices."""
        states = np.empty(length, dtype=np.int64)
        s = rng.choice(self.n_states, p=self.start)
        for t in range(length):
            states[t] = s
            s = rng.choice(self.n_states, p=self.P[s])
        return states


@dataclass(frozen=True)
class MarkovRewardProcess(MarkovProcess):
    """A Markov process with a reward R[s] received on leaving s and a discount gamma."""

    R: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,)
    gamma: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        R = np.asarray(self.R, dtype=np.float64)
        if R.shape != (self.n_states,):
            raise MDPError(f"R: expected shape ({self.n_states},), got {R.shape}")
        object.__setattr__(self, "R", R)
        if not 0.0 <= self.gamma <= 1.0:
            raise MDPError(f"gamma: must lie in [0, 1], got {self.gamma}")

    def values(self) -> np.ndarray:
        """V = (I - gamma P)^-1 R, the Bellman equation solved exactly (needs gamma < 1)."""
        if self.gamma >= 1.0:
            raise MDPError("values(): the infinite-horizon value needs gamma < 1")
        return np.linalg.solve(np.eye(self.n_states) - self.gamma * self.P, self.R)

    def sample_with_rewards(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(s_1..s_T, r_2..r_{T+1}) in the lecture's indexing: r_{t+1} = R[s_t]."""
        states = self.sample(length, rng)
        return states, self.R[states]


@dataclass(frozen=True)
class MDP:
    """P[s, a, s'], reward R[s] or R[s, a], discount gamma, start distribution, optional features."""

    P: np.ndarray  # (S, A, S)
    R: np.ndarray  # (S,) or (S, A)
    gamma: float = 0.9
    start: np.ndarray | None = None  # (S,)
    features: np.ndarray | None = None  # (S, F)

    def __post_init__(self) -> None:
        P = np.asarray(self.P, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise MDPError(f"P: expected shape (S, A, S), got {P.shape}")
        _check_stochastic("P", P)
        object.__setattr__(self, "P", P)
        S, A = P.shape[:2]
        R = np.asarray(self.R, dtype=np.float64)
        if R.shape not in ((S,), (S, A)):
            raise MDPError(f"R: expected shape ({S},) or ({S}, {A}), got {R.shape}")
        object.__setattr__(self, "R", R)
        if not 0.0 <= self.gamma <= 1.0:
            raise MDPError(f"gamma: must lie in [0, 1], got {self.gamma}")
        start = _uniform(S) if self.start is None else np.asarray(self.start, dtype=np.float64)
        if start.shape != (S,):
            raise MDPError(f"start: expected shape ({S},), got {start.shape}")
        _check_stochastic("start", start)
        object.__setattr__(self, "start", start)
        if self.features is not None:
            phi = np.asarray(self.features, dtype=np.float64)
            if phi.ndim != 2 or phi.shape[0] != S:
                raise MDPError(f"features: expected shape ({S}, F), got {phi.shape}")
            object.__setattr__(self, "features", phi)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @property
    def reward_sa(self) -> np.ndarray:
        """R as (S, A): a state reward is the same for every action."""
        if self.R.ndim == 1:
            return np.repeat(self.R[:, None], self.n_actions, axis=1)
        return self.R

    def with_reward(self, R: np.ndarray) -> "MDP":
        """The same dynamics under another reward (what inverse RL plans with)."""
        return MDP(self.P, R, self.gamma, self.start, self.features)

    def policy_transitions(self, pi: np.ndarray) -> np.ndarray:
        """P_pi[s, s'] = sum_a pi[s, a] P[s, a, s'] for a stationary policy pi (S, A)."""
        return np.einsum("sa,sat->st", pi, self.P)

    def sample(self, policy: np.ndarray, length: int, rng: np.random.Generator) -> "Trajectory":
        """Roll out `policy` (S, A) stationary or (T, S, A) time-dependent for `length` steps."""
        states = np.empty(length, dtype=np.int64)
        actions = np.empty(length, dtype=np.int64)
        rewards = np.empty(length, dtype=np.float64)
        R = self.reward_sa
        s = rng.choice(self.n_states, p=self.start)
        for t in range(length):
            probs = policy[t] if policy.ndim == 3 else policy
            a = rng.choice(self.n_actions, p=probs[s])
            states[t], actions[t], rewards[t] = s, a, R[s, a]
            s = rng.choice(self.n_states, p=self.P[s, a])
        return Trajectory(states, actions, rewards)


@dataclass(frozen=True)
class Trajectory:
    """s_0..s_{T-1}, a_0..a_{T-1}, r_0..r_{T-1} with r_t = R(s_t, a_t)."""

    states: np.ndarray  # (T,)
    actions: np.ndarray  # (T,)
    rewards: np.ndarray  # (T,)

    def discounted_return(self, gamma: float) -> float:
        return float(np.sum(self.rewards * gamma ** np.arange(len(self.rewards))))


@dataclass(frozen=True)
class POMDP:
    """An MDP whose state is seen only through observations O[s, o] = Pr(o | s)."""

    mdp: MDP
    O: np.ndarray  # (S, n_obs)
    obs_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        O = np.asarray(self.O, dtype=np.float64)
        if O.ndim != 2 or O.shape[0] != self.mdp.n_states:
            raise MDPError(f"O: expected shape ({self.mdp.n_states}, n_obs), got {O.shape}")
        _check_stochastic("O", O)
        object.__setattr__(self, "O", O)

    @property
    def n_obs(self) -> int:
        return self.O.shape[1]

    def observe(self, s: int, rng: np.random.Generator) -> int:
        return int(rng.choice(self.n_obs, p=self.O[s]))

    def belief_update(self, belief: np.ndarray, a: int, o: int) -> np.ndarray:
        """Bayes filter: b'(s') ∝ O[s', o] sum_s b(s) P[s, a, s']."""
        pred = belief @ self.mdp.P[:, a, :]
        post = pred * self.O[:, o]
        z = post.sum()
        if z <= 0:
            raise MDPError(f"observation {o} has probability 0 under the belief after action {a}")
        return post / z
