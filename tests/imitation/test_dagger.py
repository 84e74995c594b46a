"""DAgger: beta schedule, budget accounting, labels from the expert, and it learns CartPole."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.errors import UserError
from rlhfkit.imitation.bc import BCConfig, collect_demos, evaluate_policy
from rlhfkit.imitation.dagger import DAggerConfig, MixturePolicy, _split_budget, beta_schedule, dagger
from rlhfkit.imitation.experts import LinearController

FAST = BCConfig(hidden=[32, 32], ensemble=3, steps=300)


def test_beta_schedule_is_geometric_after_an_expert_round():
    assert beta_schedule(4, 0.5) == [1.0, 0.5, 0.25, 0.125]
    assert beta_schedule(3, 0.0) == [1.0, 0.0, 0.0]
    with pytest.raises(UserError):
        beta_schedule(0, 0.5)
    with pytest.raises(UserError):
        beta_schedule(3, 1.5)


def test_budget_split():
    assert _split_budget(1000, 3, None) == [334, 333, 333]
    assert _split_budget(1000, 4, 25) == [25, 325, 325, 325]
    assert sum(_split_budget(997, 7, None)) == 997
    with pytest.raises(UserError):
        _split_budget(10, 5, 9)


class _Const:
    def __init__(self, a: int) -> None:
        self.a = a

    def act(self, obs):
        return np.full(len(np.atleast_2d(obs)), self.a)


def test_mixture_policy_follows_beta():
    rng = np.random.default_rng(0)
    mix = MixturePolicy(_Const(1), _Const(0), beta=0.3, rng=rng)
    draws = np.array([mix.act(np.zeros((1, 4)))[0] for _ in range(4000)])
    assert abs(draws.mean() - 0.3) < 0.03  # the expert's action with probability beta
    assert MixturePolicy(_Const(1), None, beta=0.0, rng=rng).act(np.zeros((1, 4)))[0] == 1  # no learner yet


def test_dagger_respects_budget_and_labels_with_expert():
    expert = LinearController()
    cfg = DAggerConfig(budget=120, rounds=3, eval_episodes=0, bc=FAST)
    result = dagger(expert, "CartPole-v1", cfg, seed=0)
    assert result.expert_transitions == 120
    np.testing.assert_array_equal(result.actions, expert.act(result.obs))
    assert [r["expert_transitions"] for r in result.history] == [40, 80, 120]
    assert [r["beta"] for r in result.history] == [1.0, 0.5, 0.25]


def test_dagger_initial_demos_fill_round_one():
    expert = LinearController()
    init = collect_demos(expert, "CartPole-v1", 10, seed=0)
    cfg = DAggerConfig(budget=70, rounds=3, eval_episodes=0, bc=FAST)
    result = dagger(expert, "CartPole-v1", cfg, seed=0, initial=init)
    np.testing.assert_array_equal(result.obs[:10], init[0])
    assert [r["expert_transitions"] for r in result.history] == [10, 40, 70]


@pytest.mark.slow
def test_dagger_learns_cartpole_within_budget():
    """With 500 expert labels in 5 rounds, most on the learner's own states, the learner balances."""
    expert = LinearController()
    cfg = DAggerConfig(budget=500, rounds=5, eval_episodes=0, bc=FAST)
    result = dagger(expert, "CartPole-v1", cfg, seed=1)
    assert result.expert_transitions <= 500
    assert evaluate_policy(result.policy, "CartPole-v1", 3, seed=77).mean() >= 475
