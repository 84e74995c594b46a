"""A short CartPole run (well under a minute on two free cores): the learned reward ranks
segments like the true one, and the agent trained on it keeps the pole up far longer
than a random policy does."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.control.agent import random_returns
from rlhfkit.control.envs import make_env
from rlhfkit.control.labelers import SyntheticLabeler
from rlhfkit.control.loop import ControlConfig, train_preference_rl


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cartpole_learns_from_60_comparisons() -> None:
    cfg = ControlConfig(env="CartPole-v1", comparisons=60, timesteps=10_000, rounds=4, eval_episodes=5,
                        reward_steps=100, baseline=False, seed=0)
    res = train_preference_rl(cfg, SyntheticLabeler(seed=1))
    random_mean = random_returns(make_env("CartPole-v1"), 20, seed=5).mean()
    assert len(res["learner"].data.mu) == 60
    assert res["reward_correlation"] > 0.8
    assert np.mean(res["final_returns"]) > 4 * random_mean  # random: about 22
