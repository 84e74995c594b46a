"""Exact planning on tabular MDPs: policy evaluation, value iteration, soft value iteration,
state-visitation frequencies.

Infinite-horizon discounted forms iterate to a tolerance (Sutton & Barto, sec. 4.1 and 4.4).
Finite-horizon forms run the T-step backward recursion exactly and give time-dependent
policies (T, S, A); this is the setting of maximum-entropy IRL (Ziebart et al. 2008,
Algorithm 1; the causal-entropy form of Ziebart 2010), where the policy is

    pi_t(a|s) = exp(Q_t(s, a) - V_t(s)),   V_t(s) = log sum_a exp Q_t(s, a)          (soft)

and NOT the greedy policy of the hard max V_t(s) = max_a Q_t(s, a).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import MDP, MDPError


@dataclass(frozen=True)
class Plan:
    """Values and the policy they induce. Time-dependent plans carry a leading T axis."""

    V: np.ndarray  # (S,) or (T + 1, S); V[T] = 0 for finite horizons
    Q: np.ndarray  # (S, A) or (T, S, A)
    policy: np.ndarray  # (S, A) or (T, S, A), rows sum to 1
    iterations: int


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log sum exp along `axis`, shifted by the max for stability."""
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def greedy(Q: np.ndarray) -> np.ndarray:
    """One-hot argmax policy (ties broken by splitting mass evenly over the maximizers)."""
    best = np.isclose(Q, Q.max(axis=-1, keepdims=True), rtol=0.0, atol=1e-12)
    return best / best.sum(axis=-1, keepdims=True)


def softmax_policy(Q: np.ndarray, V: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """pi(a|s) = exp((Q(s,a) - V(s)) / tau): the soft-optimal policy of soft value iteration."""
    return np.exp((Q - V[..., None]) / temperature)


def _reward_sa(mdp: MDP, reward: np.ndarray | None) -> np.ndarray:
    R = mdp.R if reward is None else np.asarray(reward, dtype=np.float64)
    if R.ndim == 1:
        R = np.repeat(R[:, None], mdp.n_actions, axis=1)
    if R.shape != (mdp.n_states, mdp.n_actions):
        raise MDPError(f"reward: expected ({mdp.n_states},) or ({mdp.n_states}, {mdp.n_actions}), got {R.shape}")
    return R


def policy_evaluation(mdp: MDP, policy: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """V^pi = (I - gamma P_pi)^-1 r_pi, solved exactly (Bellman expectation equation; gamma < 1)."""
    if mdp.gamma >= 1.0:
        raise MDPError("policy_evaluation: the infinite-horizon value needs gamma < 1; use expected_return(T=...)")
    R = _reward_sa(mdp, reward)
    r_pi = np.sum(policy * R, axis=1)  # (S,)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * mdp.policy_transitions(policy), r_pi)


def value_iteration(mdp: MDP, reward: np.ndarray | None = None, tol: float = 1e-10,
                    max_iter: int = 100_000) -> Plan:
    """V_{k+1}(s) = max_a [R(s,a) + gamma sum_s' P(s'|s,a) V_k(s')] until ||V_{k+1} - V_k||_inf < tol."""
    return _iterate(mdp, _reward_sa(mdp, reward), soft=False, tol=tol, max_iter=max_iter, temperature=1.0)


def soft_value_iteration(mdp: MDP, reward: np.ndarray | None = None, tol: float = 1e-10,
                         max_iter: int = 100_000, temperature: float = 1.0) -> Plan:
    """V_{k+1}(s) = tau log sum_a exp(Q_k(s,a) / tau), Q_k = R + gamma P V_k (soft Bellman backup;
    Ziebart 2010, Haarnoja et al. 2017). The policy is softmax(Q / tau), which uses the soft V."""
    return _iterate(mdp, _reward_sa(mdp, reward), soft=True, tol=tol, max_iter=max_iter, temperature=temperature)


def _iterate(mdp: MDP, R: np.ndarray, soft: bool, tol: float, max_iter: int, temperature: float) -> Plan:
    if mdp.gamma >= 1.0:
        raise MDPError("infinite-horizon value iteration needs gamma < 1; use finite_horizon(T=...)")
    V = np.zeros(mdp.n_states)
    for k in range(1, max_iter + 1):
        Q = R + mdp.gamma * mdp.P @ V  # (S, A)
        V_new = temperature * logsumexp(Q / temperature) if soft else Q.max(axis=1)
        done = np.max(np.abs(V_new - V)) < tol
        V = V_new
        if done:
            break
    Q = R + mdp.gamma * mdp.P @ V
    policy = softmax_policy(Q, V, temperature) if soft else greedy(Q)
    return Plan(V, Q, policy, k)


def finite_horizon(mdp: MDP, horizon: int, reward: np.ndarray | None = None, soft: bool = False,
                   temperature: float = 1.0) -> Plan:
    """The exact T-step backward recursion, V_T = 0:

        Q_t(s, a) = R(s, a) + gamma sum_s' P(s'|s, a) V_{t+1}(s'),
        V_t(s) = max_a Q_t(s, a)                       (hard; greedy pi_t)
        V_t(s) = tau log sum_a exp(Q_t(s, a) / tau)    (soft; pi_t = exp((Q_t - V_t) / tau))
    """
    if horizon < 1:
        raise MDPError(f"horizon: must be at least 1, got {horizon}")
    R = _reward_sa(mdp, reward)
    S, A = R.shape
    P_flat = mdp.P.reshape(S * A, S)  # (S*A, S)
    V = np.zeros((horizon + 1, S))
    Q = np.empty((horizon, S, A))
    for t in range(horizon - 1, -1, -1):
        Q[t] = R + mdp.gamma * (P_flat @ V[t + 1]).reshape(S, A)
        V[t] = temperature * logsumexp(Q[t] / temperature) if soft else Q[t].max(axis=1)
    policy = softmax_policy(Q, V[:-1], temperature) if soft else greedy(Q)
    return Plan(V, Q, policy, horizon)


def _policy_at(policy: np.ndarray, t: int) -> np.ndarray:
    return policy[t] if policy.ndim == 3 else policy


def state_visitation(mdp: MDP, policy: np.ndarray, horizon: int) -> np.ndarray:
    """D[t, s] = Pr(s_t = s) under `policy` for t = 0..T-1 (the forward pass of Ziebart 2008,
    Algorithm 1): D_0 = start, D_{t+1}(s') = sum_{s,a} D_t(s) pi_t(a|s) P(s'|s, a)."""
    if policy.ndim == 3 and policy.shape[0] < horizon:
        raise MDPError(f"policy has {policy.shape[0]} time steps, fewer than horizon {horizon}")
    S, A = mdp.n_states, mdp.n_actions
    P_flat = mdp.P.reshape(S * A, S)  # (S*A, S)
    D = np.empty((horizon, S))
    D[0] = mdp.start
    for t in range(horizon - 1):
        D[t + 1] = (D[t][:, None] * _policy_at(policy, t)).reshape(S * A) @ P_flat
    return D


def visitation_frequencies(mdp: MDP, policy: np.ndarray, horizon: int, discount: float | None = None) -> np.ndarray:
    """sum_t discount^t Pr(s_t = s) over t < T: expected (discounted) visits per state (S,).
    `discount` defaults to the MDP's gamma."""
    g = mdp.gamma if discount is None else discount
    D = state_visitation(mdp, policy, horizon)
    return (g ** np.arange(horizon)) @ D


def feature_expectations(mdp: MDP, policy: np.ndarray, horizon: int) -> np.ndarray:
    """mu(pi) = E[sum_t gamma^t phi(s_t)] over t < T (Abbeel & Ng 2004, eq. 4, truncated at T)."""
    if mdp.features is None:
        raise MDPError("feature_expectations: the MDP has no features")
    return visitation_frequencies(mdp, policy, horizon) @ mdp.features


def expected_return(mdp: MDP, policy: np.ndarray, horizon: int, reward: np.ndarray | None = None) -> float:
    """E[sum_{t<T} gamma^t R(s_t, a_t)] exactly, from the state-visitation distributions."""
    R = _reward_sa(mdp, reward)
    D = state_visitation(mdp, policy, horizon)
    total = 0.0
    for t in range(horizon):
        total += mdp.gamma ** t * float(np.sum(D[t][:, None] * _policy_at(policy, t) * R))
    return total


def uniform_policy(mdp: MDP) -> np.ndarray:
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
