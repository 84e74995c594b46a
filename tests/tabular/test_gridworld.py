"""The lectures' penguin world and the random-feature gridworlds."""

import numpy as np
import pytest

from rlhfkit.tabular import (
    MDPError,
    parse_env,
    penguin_mdp,
    penguin_pomdp,
    penguin_process,
    penguin_reward_process,
    random_feature_gridworld,
)

# The deck's matrix Pr(s_{t+1} | s_t), s_t the column, as printed (2-digit rounding).
_ = 0
LECTURE = np.array([
    [_, .33, _, _, .33, _, _, _, _, _, _, _, _, _, _, _],
    [.5, _, .33, _, _, .25, _, _, _, _, _, _, _, _, _, _],
    [_, .33, _, .5, _, _, .25, _, _, _, _, _, _, _, _, _],
    [_, _, .33, _, _, _, _, .33, _, _, _, _, _, _, _, _],
    [.5, _, _, _, _, .25, _, _, .33, _, _, _, _, _, _, _],
    [_, .33, _, _, .33, _, .25, _, _, .25, _, _, _, _, _, _],
    [_, _, .33, _, _, .25, _, .33, _, _, .25, _, _, _, _, _],
    [_, _, _, .5, _, _, .25, _, _, _, _, .33, _, _, _, _],
    [_, _, _, _, .33, _, _, _, _, .25, _, _, .5, _, _, _],
    [_, _, _, _, _, .25, _, _, .33, _, .25, _, _, .33, _, _],
    [_, _, _, _, _, _, .25, _, _, .25, _, .33, _, _, .33, _],
    [_, _, _, _, _, _, _, .33, _, _, .25, _, _, _, _, .5],
    [_, _, _, _, _, _, _, _, .33, _, _, _, _, .33, _, _],
    [_, _, _, _, _, _, _, _, _, .25, _, _, .5, _, .33, _],
    [_, _, _, _, _, _, _, _, _, _, .25, _, _, .33, _, .5],
    [_, _, _, _, _, _, _, _, _, _, _, .33, _, _, .33, _],
])


def test_penguin_transition_matrix_equals_lecture():
    P = penguin_process().P  # row-stochastic P[s, s']
    np.testing.assert_array_equal(np.round(P.T, 2), LECTURE)
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert P[5, 1] == pytest.approx(0.25) and P[0, 1] == pytest.approx(0.5) and P[1, 0] == pytest.approx(1 / 3)


def test_penguin_reward_trajectory_of_the_lecture():
    # tau = [1,0, 2,0, 6,0, 10,0, 9,1, 10,0, 11,1, 15,0]: r_{t+1} = R[s_t]
    mrp = penguin_reward_process()
    squares = np.array([1, 2, 6, 10, 9, 10, 11, 15])
    np.testing.assert_array_equal(mrp.R[squares - 1], [0, 0, 0, 0, 1, 0, 1, 0])
    # every step of that trajectory has positive probability under the lecture's walk
    assert all(mrp.P[a - 1, b - 1] > 0 for a, b in zip(squares[:-1], squares[1:]))


def test_penguin_mdp_slips():
    mdp = penguin_mdp()
    # square 6 (index 5) moving right: 1/2 to square 7, the rest spread over squares 2, 5, 10
    np.testing.assert_allclose(mdp.P[5, 1, [6, 1, 4, 9]], [0.5, 1 / 6, 1 / 6, 1 / 6])
    # corner square 1 moving up (a wall): either allowed move equally
    np.testing.assert_allclose(mdp.P[0, 0, [1, 4]], [0.5, 0.5])


def test_penguin_pomdp_sees_its_3x3_box():
    pomdp = penguin_pomdp()
    np.testing.assert_allclose(pomdp.O.sum(1), 1.0)
    box_of_square_1 = pomdp.obs_names[int(np.argmax(pomdp.O[0]))]
    assert box_of_square_1 == "####..#.."  # walls above and to the left, ice elsewhere
    box_of_square_6 = pomdp.obs_names[int(np.argmax(pomdp.O[5]))]
    # rows 1-2-3 / 5-6-7 / 9-10-11: a hole on square 7, fish on squares 9 and 11
    assert box_of_square_6 == ".....HF.F"
    b = pomdp.belief_update(np.full(16, 1 / 16), 1, int(np.argmax(pomdp.O[5])))
    assert b[5] == pytest.approx(1.0)  # this box is seen from square 6 only


def test_random_gridworld_is_seeded_and_linear():
    a = random_feature_gridworld(5, 4, seed=7)
    b = random_feature_gridworld(5, 4, seed=7)
    np.testing.assert_array_equal(a.mdp.features, b.mdp.features)
    np.testing.assert_allclose(a.mdp.R, a.mdp.features @ a.true_weights)
    assert a.mdp.features.sum(0).min() >= 1  # every feature occurs
    np.testing.assert_allclose(a.mdp.P.sum(-1), 1.0)


def test_parse_env():
    assert parse_env("gridworld-10x10").size == 10
    assert parse_env("penguin").mdp.n_states == 16
    with pytest.raises(MDPError, match="unknown env"):
        parse_env("gridworld-5x6")


def test_sampling_follows_dynamics():
    proc = penguin_process()
    states = proc.sample(200, np.random.default_rng(0))
    assert states[0] == 0
    assert all(proc.P[a, b] > 0 for a, b in zip(states[:-1], states[1:]))


def test_reward_process_values_solve_bellman():
    mrp = penguin_reward_process(gamma=0.9)
    V = mrp.values()
    np.testing.assert_allclose(V, mrp.R + 0.9 * mrp.P @ V, atol=1e-12)
    assert V[8] > V[0]  # next to (on) a fish is worth more than the far corner
    states, rewards = mrp.sample_with_rewards(50, np.random.default_rng(1))
    np.testing.assert_array_equal(rewards, mrp.R[states])


def test_process_distribution_by_matrix_power():
    proc = penguin_process()
    np.testing.assert_allclose(proc.distribution(1)[[1, 4]], [0.5, 0.5])
    np.testing.assert_allclose(proc.distribution(2)[0], 0.5 * (1 / 3) + 0.5 * (1 / 3))
