"""Expert demonstrations on tabular MDPs and the scores inverse RL is judged by.

The expert plays the optimal finite-horizon policy of the true reward. A learned reward is
judged by the policy that is optimal for it, evaluated exactly on the true reward and
normalized so that the uniform random policy scores 0 and the optimal policy 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.gridworld import GridTask
from rlhfkit.tabular.mdp import MDP, Trajectory
from rlhfkit.tabular.planning import expected_return, finite_horizon, state_visitation, uniform_policy


def expert_policy(task: GridTask) -> np.ndarray:
    """The optimal time-dependent policy (T, S, A) for the true reward (ties split evenly)."""
    return finite_horizon(task.mdp, task.horizon).policy


def sample_demos(task: GridTask, n: int, seed: int = 0, policy: np.ndarray | None = None) -> list[Trajectory]:
    """`n` trajectories of length T from the expert (or `policy`), seeded."""
    rng = np.random.default_rng(seed)
    pi = expert_policy(task) if policy is None else policy
    return [task.mdp.sample(pi, task.horizon, rng) for _ in range(n)]


def empirical_visitation(mdp: MDP, demos: list[Trajectory], horizon: int) -> np.ndarray:
    """Mean over demos of sum_t gamma^t [s_t = s]: the demos' discounted state-visit counts (S,)."""
    out = np.zeros(mdp.n_states)
    disc = mdp.gamma ** np.arange(horizon)
    for d in demos:
        np.add.at(out, d.states[:horizon], disc[: len(d.states[:horizon])])
    return out / max(len(demos), 1)


@dataclass(frozen=True)
class RewardScore:
    """How good a learned reward is on the true one."""

    normalized: float  # (J(pi_hat) - J(random)) / (J(pi*) - J(random)) on the true reward
    return_learned_policy: float  # J(pi_hat) on the true reward
    expert_return: float  # J(pi*) on the true reward
    random_return: float
    policy_agreement: float  # expert-visit-weighted share of (t, s) where pi_hat picks an optimal action
    expert_return_learned_reward: float  # J(pi*) under the learned reward
    best_return_learned_reward: float  # max_pi J(pi) under the learned reward


def score_reward(task: GridTask, reward: np.ndarray) -> RewardScore:
    """Plan for `reward` (S,), evaluate on the true reward, compare actions with the expert."""
    mdp, T = task.mdp, task.horizon
    star = finite_horizon(mdp, T)
    learned = finite_horizon(mdp, T, reward=reward)
    return score_policy(task, learned.policy, reward, star_plan=star)


def score_policy(task: GridTask, policy: np.ndarray, reward: np.ndarray | None = None, star_plan=None) -> RewardScore:
    """Score any policy (S, A) or (T, S, A) on the true reward; `reward` adds the learned-reward returns."""
    mdp, T = task.mdp, task.horizon
    star = star_plan if star_plan is not None else finite_horizon(mdp, T)
    j_star = expected_return(mdp, star.policy, T)
    j_rand = expected_return(mdp, uniform_policy(mdp), T)
    j_hat = expected_return(mdp, policy, T)
    pol = np.broadcast_to(policy, (T, mdp.n_states, mdp.n_actions)) if policy.ndim == 2 else policy
    optimal = np.isclose(star.Q, star.Q.max(axis=-1, keepdims=True), atol=1e-9)  # (T, S, A)
    hit = np.sum(pol * optimal, axis=-1)  # (T, S) probability of an optimal action
    D = state_visitation(mdp, star.policy, T)  # (T, S)
    agreement = float(np.sum(D * hit) / np.sum(D))
    if reward is not None:
        j_star_learned = expected_return(mdp, star.policy, T, reward=reward)
        best_learned = float(np.dot(mdp.start, finite_horizon(mdp, T, reward=reward).V[0]))
    else:
        j_star_learned = best_learned = float("nan")
    denom = j_star - j_rand
    normalized = (j_hat - j_rand) / denom if abs(denom) > 1e-12 else 1.0
    return RewardScore(float(normalized), j_hat, j_star, j_rand, agreement, j_star_learned, best_learned)
