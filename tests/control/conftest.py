from __future__ import annotations

import os

import pytest

os.environ.setdefault("RLHFKIT_PROGRESS", "0")


@pytest.fixture(scope="session")
def cartpole_info():
    from rlhfkit.control.envs import make_env, space_info

    return space_info(make_env("CartPole-v1"), "CartPole-v1")


@pytest.fixture(scope="session")
def cartpole_trajs():
    from rlhfkit.control.envs import make_env
    from rlhfkit.control.segments import random_rollouts

    return random_rollouts(make_env("CartPole-v1"), 400, seed=0)
