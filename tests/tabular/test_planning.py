"""Value iteration, soft value iteration and visitation frequencies, checked by hand on a 2-state MDP
and against exact occupancy by matrix powers."""

import math

import numpy as np
import pytest

from rlhfkit.tabular import (
    MDP,
    MDPError,
    expected_return,
    finite_horizon,
    policy_evaluation,
    random_feature_gridworld,
    soft_value_iteration,
    state_visitation,
    uniform_policy,
    value_iteration,
    visitation_frequencies,
)


def two_state(gamma: float = 0.5) -> MDP:
    """States 0, 1; action 0 stays, action 1 switches (deterministic); reward 1 for being in state 1."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 0] = 1.0
    return MDP(P, np.array([0.0, 1.0]), gamma, start=np.array([1.0, 0.0]))


def test_value_iteration_by_hand():
    # V(1) = 1 + 0.5 V(1) = 2 (stay); V(0) = 0 + 0.5 V(1) = 1 (switch)
    plan = value_iteration(two_state())
    np.testing.assert_allclose(plan.V, [1.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(plan.Q, [[0.5, 1.0], [2.0, 1.5]], atol=1e-9)
    np.testing.assert_array_equal(plan.policy, [[0.0, 1.0], [1.0, 0.0]])


def test_policy_evaluation_by_hand():
    # uniform policy: V = (I - 0.5 P_pi)^-1 R with P_pi = all 0.5 -> V(0) = 0.5, V(1) = 1.5
    V = policy_evaluation(two_state(), uniform_policy(two_state()))
    np.testing.assert_allclose(V, [0.5, 1.5], atol=1e-12)


def test_soft_value_iteration_by_hand():
    # V1 = 1 + V0 and V0 = 0.5 V0 + log(1 + e^0.5)  =>  V0 = 2 log(1 + e^0.5)
    plan = soft_value_iteration(two_state())
    v0 = 2 * math.log1p(math.exp(0.5))
    np.testing.assert_allclose(plan.V, [v0, v0 + 1], atol=1e-9)
    sig = 1 / (1 + math.exp(-0.5))
    np.testing.assert_allclose(plan.policy, [[1 - sig, sig], [sig, 1 - sig]], atol=1e-9)
    # the soft V is a log-sum-exp, strictly above the hard max
    assert np.all(plan.V > plan.Q.max(axis=1))


def test_finite_horizon_by_hand():
    mdp = two_state(gamma=1.0)
    hard = finite_horizon(mdp, 2)
    np.testing.assert_allclose(hard.V[0], [1.0, 2.0])
    soft = finite_horizon(mdp, 2, soft=True)
    np.testing.assert_allclose(soft.V[1], [math.log(2), 1 + math.log(2)])
    np.testing.assert_allclose(soft.V[0, 0], math.log(2) + math.log(1 + math.e))
    # time 0 in state 0: stay leads to V_1(0) = log 2, switch to V_1(1) = 1 + log 2
    np.testing.assert_allclose(soft.policy[0, 0], [1 / (1 + math.e), math.e / (1 + math.e)])


def test_visitation_by_hand():
    mdp = two_state(gamma=1.0)
    D = state_visitation(mdp, finite_horizon(mdp, 3).policy, 3)
    np.testing.assert_allclose(D, [[1, 0], [0, 1], [0, 1]])
    soft = finite_horizon(mdp, 2, soft=True)
    D = state_visitation(mdp, soft.policy, 2)
    np.testing.assert_allclose(D[1], [1 / (1 + math.e), math.e / (1 + math.e)])
    np.testing.assert_allclose(visitation_frequencies(mdp, soft.policy, 2, discount=0.5),
                               [1 + 0.5 / (1 + math.e), 0.5 * math.e / (1 + math.e)])


def test_visitation_equals_matrix_powers():
    task = random_feature_gridworld(4, 3, seed=1)
    mdp = task.mdp
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)  # (S, A) stationary
    P_pi = mdp.policy_transitions(pi)
    D = state_visitation(mdp, pi, 12)
    for t in range(12):
        np.testing.assert_allclose(D[t], mdp.start @ np.linalg.matrix_power(P_pi, t), atol=1e-12)
    # discounted frequencies: sum_t gamma^t start P^t
    exact = sum(mdp.gamma**t * mdp.start @ np.linalg.matrix_power(P_pi, t) for t in range(12))
    np.testing.assert_allclose(visitation_frequencies(mdp, pi, 12), exact, atol=1e-12)


def test_time_dependent_visitation_equals_product_of_matrices():
    task = random_feature_gridworld(3, 2, seed=2)
    mdp = task.mdp
    plan = finite_horizon(mdp, 5, soft=True)
    D = state_visitation(mdp, plan.policy, 5)
    prod = np.eye(mdp.n_states)
    for t in range(5):
        np.testing.assert_allclose(D[t], mdp.start @ prod, atol=1e-12)
        prod = prod @ mdp.policy_transitions(plan.policy[t])


def test_expected_return_matches_policy_evaluation_for_long_horizon():
    mdp = two_state(gamma=0.5)
    pi = uniform_policy(mdp)
    V = policy_evaluation(mdp, pi)
    assert expected_return(mdp, pi, 80) == pytest.approx(float(mdp.start @ V), abs=1e-12)


def test_soft_policy_is_softmax_of_q_minus_soft_v():
    task = random_feature_gridworld(4, 3, seed=3)
    plan = finite_horizon(task.mdp, 8, soft=True)
    np.testing.assert_allclose(plan.policy.sum(-1), 1.0, atol=1e-12)
    lse = np.log(np.exp(plan.Q).sum(-1))
    np.testing.assert_allclose(plan.V[:-1], lse, atol=1e-10)
    # the hard max gives different (unnormalized) probabilities: the bug of using max instead of soft V
    hard = np.exp(plan.Q - plan.Q.max(-1, keepdims=True))
    assert not np.allclose(hard.sum(-1), 1.0)


def test_bad_inputs_raise():
    with pytest.raises(MDPError, match="rows must sum to 1"):
        MDP(np.ones((2, 1, 2)), np.zeros(2))
    with pytest.raises(MDPError, match="R: expected"):
        MDP(np.full((2, 1, 2), 0.5), np.zeros(3))
    with pytest.raises(MDPError, match="gamma < 1"):
        value_iteration(two_state(gamma=1.0))
