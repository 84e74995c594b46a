"""TAMER: credit by hand, the H_hat update by hand, and learning from a simulated trainer."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.errors import UserError
from rlhfkit.imitation.bc import evaluate_policy
from rlhfkit.imitation.experts import LinearController
from rlhfkit.imitation.tamer import (CARTPOLE_SCALE, SimulatedTrainer, TamerAgent, TamerConfig, one_hot_features,
                                     scaled_linear_features, train_tamer, uniform_delay_credit)


def test_uniform_delay_credit_by_hand():
    # delay ~ U[0.2, 0.8]; feedback at t=1.0; step shown during [0.5, 0.6) -> delays in (0.4, 0.5] -> 0.1/0.6
    assert uniform_delay_credit(1.0, 0.5, 0.6, 0.2, 0.8) == pytest.approx(0.1 / 0.6)
    # a step shown after the press gets nothing; one long before the window gets nothing
    assert uniform_delay_credit(1.0, 1.1, 1.2, 0.2, 0.8) == 0.0
    assert uniform_delay_credit(1.0, 0.0, 0.1, 0.2, 0.8) == 0.0
    # partial overlap at the window's edge: [0.15, 0.25) -> delays (0.75, 0.85] -> only (0.75, 0.8]
    assert uniform_delay_credit(1.0, 0.15, 0.25, 0.2, 0.8) == pytest.approx(0.05 / 0.6)
    # steps tiling the whole window share credit 1
    total = sum(uniform_delay_credit(1.0, t, t + 0.1, 0.2, 0.8) for t in np.arange(0.0, 1.0, 0.1))
    assert total == pytest.approx(1.0)
    with pytest.raises(UserError):
        uniform_delay_credit(1.0, 0.0, 0.1, 0.8, 0.2)


def test_feedback_update_by_hand():
    cfg = TamerConfig(lr=0.5, delay_min=0.2, delay_max=0.8, step_seconds=0.1)
    agent = TamerAgent(one_hot_features(3), n_features=3, n_actions=2, cfg=cfg)
    agent.record(np.array(1), 0, t_start=0.5)  # credit 1/6 for a press at t=1.0
    used = agent.feedback(+1.0, t_f=1.0)
    assert used == pytest.approx(1 / 6)
    # w_0 += lr * c * (h - 0) * phi / ||phi||^2 = 0.5 * (1/6) * 1 on state 1
    np.testing.assert_allclose(agent.w, [[0, 0.5 / 6, 0], [0, 0, 0]])
    np.testing.assert_allclose(agent.h_values(np.array(1)), [0.5 / 6, 0.0])
    assert agent.act(np.array([1]))[0] == 0  # greedy on H_hat


def test_trainer_delivers_delayed_signals():
    trainer = SimulatedTrainer(LinearController(), p_feedback=1.0, delay_min=0.2, delay_max=0.3, seed=0)
    obs = np.array([0.0, 0.0, 0.1, 0.0])  # the pole leans right: the oracle pushes right (1)
    trainer.watch(obs, 1, t=0.0)
    trainer.watch(obs, 0, t=0.1)
    assert trainer.due(0.15) == []
    signals = trainer.due(1.0)
    assert [h for _, h in signals] == [1.0, -1.0]
    assert all(0.2 <= t <= 0.4 for t, _ in signals)


class Corridor:
    """States 0..6 in a line, start at 3, +1 reward and the end at 6, the end at 0 too."""

    def __init__(self) -> None:
        self.s = 3

    def reset(self, seed=None):
        self.s = 3
        return self.s, {}

    def step(self, a):
        self.s += 1 if a == 1 else -1
        done = self.s in (0, 6)
        return self.s, float(self.s == 6), done, False, {}


def test_tabular_tamer_learns_corridor():
    oracle = type("Right", (), {"act": lambda self, o: np.ones(len(np.atleast_1d(o)), dtype=int)})()
    agent = TamerAgent(one_hot_features(7), 7, 2, TamerConfig(), seed=0)
    trainer = SimulatedTrainer(oracle, p_feedback=1.0, seed=0)
    returns = train_tamer(agent, trainer, Corridor(), episodes=15, seed=0, max_steps=50)
    assert returns[-1] == 1.0
    for s in (3, 4, 5):  # the states it visits: H_hat prefers the trainer's action
        h = agent.h_values(np.array(s))
        assert h[1] > h[0]


@pytest.mark.slow
def test_tamer_learns_to_balance_cartpole_from_simulated_feedback():
    agent = TamerAgent(scaled_linear_features(CARTPOLE_SCALE), 5, 2, TamerConfig(), seed=1)
    trainer = SimulatedTrainer(LinearController(), p_feedback=0.5, seed=1)
    returns = train_tamer(agent, trainer, "CartPole-v1", episodes=25, seed=0)
    assert np.mean(returns[:3]) < 100  # it starts knowing nothing
    assert evaluate_policy(agent, "CartPole-v1", 3, seed=500).mean() >= 400
