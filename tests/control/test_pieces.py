"""Segments, absorbing padding, features, the labeler, the schedule and buffer relabeling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.control.envs import EnvError, absorbing_features, encode_actions, features, make_env, space_info
from rlhfkit.control.labelers import SyntheticLabeler
from rlhfkit.control.loop import comparison_schedule
from rlhfkit.control.queries import Query
from rlhfkit.control.segments import EpisodeRecorder, Segment, Trajectory, make_segment, sample_segments


def traj(n: int, terminated: bool, obs_dim: int = 4) -> Trajectory:
    return Trajectory(obs=np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim) + 1,
                      actions=np.arange(n) % 2, true_rewards=np.ones(n), terminated=terminated, reset_seed=0)


def test_segment_past_termination_is_padded_with_absorbing_steps(cartpole_info) -> None:
    seg = make_segment(cartpole_info, traj(5, True), start=2, k=6)
    assert seg.x.shape == (6, cartpole_info.feature_dim)
    assert seg.true_return == 3.0 and seg.real_steps == 3
    assert np.all(seg.x[:3, -1] == 0) and np.all(seg.x[3:, -1] == 1)
    assert np.allclose(seg.x[3:], np.repeat(absorbing_features(cartpole_info), 3, axis=0))
    with pytest.raises(ValueError):
        make_segment(cartpole_info, traj(5, False), start=2, k=6)


def test_sampled_segments_pad_only_terminated_episodes(cartpole_info) -> None:
    rng = np.random.default_rng(0)
    segs = sample_segments(cartpole_info, [traj(8, False), traj(3, False), traj(4, True)], 200, 5, rng)
    for s in segs:
        assert s.x.shape[0] == 5
        if not s.traj.terminated:
            assert s.real_steps == 5
    assert any(s.traj.terminated and s.real_steps < 5 for s in segs)


def test_features_encode_actions(cartpole_info) -> None:
    x = features(cartpole_info, np.ones((2, 4)), np.array([1, 0]))
    assert np.allclose(x[:, 4:6], [[0, 1], [1, 0]]) and np.all(x[:, -1] == 0)
    pend = space_info(make_env("Pendulum-v1"), "Pendulum-v1")
    assert np.allclose(encode_actions(pend, np.array([[-2.0], [0.0], [2.0], [5.0]])).ravel(), [-1, 0, 1, 1])


def test_unsupported_env_is_a_user_error() -> None:
    with pytest.raises(EnvError):
        make_env("NoSuchEnv-v9")
    with pytest.raises(EnvError):
        space_info(make_env("FrozenLake-v1"), "FrozenLake-v1")


def test_recorder_hides_true_reward_and_records_episodes() -> None:
    rec = EpisodeRecorder(make_env("CartPole-v1"), seed=0, reward_fn=lambda o, a: np.full(len(o), -3.0))
    rec.reset()
    rewards, done = [], False
    while not done:
        _, r, term, trunc, _ = rec.step(1)
        rewards.append(r)
        done = term or trunc
    assert set(rewards) == {-3.0}
    (ep,) = rec.pop_episodes()
    assert ep.terminated and len(ep) == len(rewards) and ep.true_rewards.sum() == len(rewards)
    # the episode replays exactly from its seed and actions
    env = make_env("CartPole-v1")
    obs, _ = env.reset(seed=ep.reset_seed)
    assert np.allclose(obs, ep.obs[0])


def _q(ra: float, rb: float) -> Query:
    a = Segment(traj=traj(1, True), start=0, length=1, x=np.zeros((1, 7)), true_return=ra)
    b = Segment(traj=traj(1, True), start=0, length=1, x=np.zeros((1, 7)), true_return=rb)
    return Query(0, a, b)


def test_synthetic_labeler_prefers_higher_true_return() -> None:
    lab = SyntheticLabeler()
    lab.request([_q(3, 1), _q(1, 3), _q(2, 2)])
    assert [mu for _, mu in lab.answers()] == [1.0, 0.0, 0.5]
    assert lab.answers() == [] and lab.pending() == 0


def test_synthetic_labeler_bradley_terry_noise_matches_sigmoid() -> None:
    lab = SyntheticLabeler(beta=0.5, seed=0)
    lab.request([_q(2.0, 0.0) for _ in range(4000)])
    freq = np.mean([mu for _, mu in lab.answers()])
    assert abs(freq - 1 / (1 + math.exp(-1.0))) < 0.03


def test_synthetic_labeler_random_answers() -> None:
    lab = SyntheticLabeler(error=0.5, seed=0)
    lab.request([_q(5.0, 0.0) for _ in range(4000)])
    freq = np.mean([mu for _, mu in lab.answers()])
    assert abs(freq - 0.75) < 0.03  # half right by rule, half a fair coin
    with pytest.raises(ValueError):
        SyntheticLabeler(beta=-1.0)


def test_schedule_front_loads_and_sums_to_total() -> None:
    s = comparison_schedule(100, 10)
    assert sum(s) == 100 and len(s) == 11
    assert s[0] > s[5] > 0 and all(x >= y - 1 for x, y in zip(s, s[1:]))


def test_sac_replay_buffer_is_relabeled() -> None:
    from rlhfkit.control.agent import make_agent, relabel

    env = make_env("Pendulum-v1")
    info = space_info(env, "Pendulum-v1")
    agent = make_agent("sac", env, seed=0, overrides={"learning_starts": 200})
    agent.learn(50)
    n = relabel(agent, info, lambda x: x[:, info.obs_dim])  # reward = the scaled action
    assert n == 50
    acts = agent.replay_buffer.actions[:50, 0, 0]
    assert np.allclose(agent.replay_buffer.rewards[:50, 0], np.clip(acts, -1, 1), atol=1e-5)
