"""Apprenticeship learning via inverse RL: the projection method (Abbeel & Ng 2004, sec. 3.1).

Feature expectations mu(pi) = E[sum_t gamma^t phi(s_t)] are computed exactly from the known
dynamics (truncated at the horizon T). The loop:
  0. pi_0 arbitrary (uniform); mu_bar_0 = mu(pi_0)
  i. w_i = mu_E - mu_bar_{i-1};  t_i = ||w_i||_2;  stop if t_i <= eps
     pi_i = optimal policy for reward r = phi . w_i;  mu_i = mu(pi_i)
     mu_bar_i = mu_bar_{i-1} + [(mu_i - mu_bar_{i-1}) . (mu_E - mu_bar_{i-1})]
                              / [(mu_i - mu_bar_{i-1}) . (mu_i - mu_bar_{i-1})] (mu_i - mu_bar_{i-1})
mu_bar_i is the orthogonal projection of mu_E onto the segment [mu_bar_{i-1}, mu_i], so it stays a
convex combination of the mu_j: we track those mixing weights lambda, and the trajectory-level
mixture sum_j lambda_j pi_j has feature expectations exactly mu_bar (sec. 3, "mixing policies").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhfkit.tabular.demos import empirical_visitation
from rlhfkit.tabular.mdp import MDP, MDPError, Trajectory
from rlhfkit.tabular.planning import feature_expectations, finite_horizon, uniform_policy


@dataclass
class FeatureMatchingResult:
    policies: list[np.ndarray]  # pi_0, pi_1, ...  each (S, A) or (T, S, A)
    mixture: np.ndarray  # (len(policies),) lambda: mu(mixture) = mu_bar
    best: int  # index of the single policy with the smallest ||mu(pi_i) - mu_E||_2
    weights: np.ndarray  # the last reward weights w_i
    mu_expert: np.ndarray  # (F,)
    gap: list[float] = field(default_factory=list)  # ||mu(pi_i) - mu_E||_2 per iteration
    t: list[float] = field(default_factory=list)  # ||mu_bar_i - mu_E||_2 per iteration (the margin t_i)
    converged: bool = False

    @property
    def iterations(self) -> int:
        return len(self.policies) - 1


def projection_method(mdp: MDP, demos: list[Trajectory], horizon: int, eps: float = 1e-3,
                      max_iter: int = 100, patience: int = 5, on_iter=None) -> FeatureMatchingResult:
    """Run the projection method until ||mu_E - mu_bar|| <= eps * ||mu_E||, `max_iter` iterations, or
    `patience` iterations in a row without progress (the empirical mu_E can lie outside what any
    policy achieves, e.g. from few demonstrations, so t_i need not reach 0)."""
    if mdp.features is None:
        raise MDPError("projection_method: the MDP needs state features")
    if not demos:
        raise MDPError("projection_method: no demonstrations")
    phi = mdp.features
    mu_e = empirical_visitation(mdp, demos, horizon) @ phi  # (F,)
    pi0 = uniform_policy(mdp)
    mus = [feature_expectations(mdp, pi0, horizon)]
    policies = [pi0]
    lam = np.array([1.0])
    mu_bar = mus[0].copy()
    gap = [float(np.linalg.norm(mus[0] - mu_e))]
    ts = [gap[0]]
    w = mu_e - mu_bar
    threshold = eps * max(np.linalg.norm(mu_e), 1e-12)
    converged = False
    stalled = 0
    for i in range(1, max_iter + 1):
        w = mu_e - mu_bar
        if np.linalg.norm(w) <= threshold:
            converged = True
            break
        pi = finite_horizon(mdp, horizon, reward=phi @ w).policy  # the RL step: optimal for r = phi . w
        mu = feature_expectations(mdp, pi, horizon)
        policies.append(pi)
        mus.append(mu)
        d = mu - mu_bar
        denom = float(d @ d)
        alpha = 0.0 if denom < 1e-18 else float(np.clip(d @ (mu_e - mu_bar) / denom, 0.0, 1.0))
        mu_bar = mu_bar + alpha * d
        lam = np.append((1.0 - alpha) * lam, alpha)
        gap.append(float(np.linalg.norm(mu - mu_e)))
        ts.append(float(np.linalg.norm(mu_e - mu_bar)))
        if on_iter is not None:
            on_iter(i, {"mu_gap": gap[-1], "t": ts[-1]})
        stalled = stalled + 1 if ts[-2] - ts[-1] <= 1e-9 * threshold / eps else 0
        if denom < 1e-18 or stalled >= patience:  # new policies add nothing: mu_E lies outside their hull
            break
    best = int(np.argmin(gap))
    return FeatureMatchingResult(policies, lam, best, w, mu_e, gap, ts, converged)


def mixture_value(result: FeatureMatchingResult, values: list[float]) -> float:
    """Expected value of the trajectory-level mixture: sum_j lambda_j value(pi_j)."""
    return float(np.dot(result.mixture, values))
