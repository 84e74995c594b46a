"""Dataset collection: cost wrappers, the five D4RL mixtures from a tiny behaviour run, the
cache (reuse, resume), the CLI and the Minari round trip."""

from __future__ import annotations

import dataclasses
import shutil
import sys

import gymnasium as gym
import numpy as np
import pytest

from rlhfkit.control.envs import EnvError
from rlhfkit.errors import UserError
from rlhfkit.offline.collect import (
    CollectConfig,
    export_minari,
    load_behaviour,
    pick_medium,
    run_collect,
)
from rlhfkit.offline.dataset import MIXTURES, load_mixture, read_info
from rlhfkit.offline.envs import VelocityCost, make_env, resolve_cost, rollout, spec_for


class _Speed(gym.Env):
    """Reports the action as its forward (and sideways) speed."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-5, 5, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {"x_velocity": action[0], "y_velocity": action[1]}


def test_velocity_cost_follows_the_threshold() -> None:
    env = VelocityCost(_Speed(), threshold=0.7402)
    env.reset()
    assert env.step(np.array([0.8, 0.0]))[4]["cost"] == 1.0
    assert env.step(np.array([0.7, 0.0]))[4]["cost"] == 0.0
    assert env.step(np.array([0.7, 5.0]))[4]["cost"] == 0.0  # forward speed only
    planar = VelocityCost(_Speed(), threshold=0.7402, planar=True)
    assert planar.step(np.array([0.6, 0.6]))[4]["cost"] == 1.0  # |(0.6, 0.6)| = 0.85


def test_pendulum_cost_bounds_the_angular_velocity() -> None:
    env = make_env("Pendulum-v1")
    assert env.threshold == 4.0 and env.index == 2
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.0, 4.5])  # upright: no gravity torque, the speed stays
    obs, _, _, _, info = env.step(np.array([0.0], np.float32))
    assert obs[2] == pytest.approx(4.5) and info["cost"] == 1.0
    env.unwrapped.state = np.array([0.0, -3.5])
    assert env.step(np.array([0.0], np.float32))[4]["cost"] == 0.0


def test_cartpole_cost_bounds_the_cart_velocity() -> None:
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.0, -0.5, 0.0, 0.0])
    obs, _, _, _, info = env.step(0)  # a push left: faster still
    assert obs[1] < -0.3 and info["cost"] == 1.0
    env.unwrapped.state = np.array([0.0, 0.0, 0.0, 0.0])
    obs, _, _, _, info = env.step(1)  # one push from rest: ~0.2
    assert 0.0 < obs[1] < 0.3 and info["cost"] == 0.0


def test_hopper_velocity_cost() -> None:
    pytest.importorskip("mujoco")
    env = make_env("Hopper-v5")
    assert env.threshold == 0.7402
    env.reset(seed=0)
    u = env.unwrapped
    qvel = u.data.qvel.copy()
    qvel[0] = 3.0
    u.set_state(u.data.qpos.copy(), qvel)
    info = env.step(np.zeros(3, np.float32))[4]
    assert info["x_velocity"] > 0.7402 and info["cost"] == 1.0
    env.reset(seed=0)
    info = env.step(np.zeros(3, np.float32))[4]
    assert info["cost"] == float(info["x_velocity"] > 0.7402)


def test_cost_settings_and_defaults_for_other_envs() -> None:
    assert resolve_cost("Hopper-v5", {"name": "velocity"})["threshold"] == 0.7402
    assert resolve_cost("Acrobot-v1") == {"name": "none"}
    assert spec_for("Acrobot-v1").algo == "ppo" and spec_for("MountainCarContinuous-v0").algo == "sac"
    acrobot = make_env("Acrobot-v1")
    acrobot.reset(seed=0)
    assert acrobot.step(0)[4]["cost"] == 0.0
    with pytest.raises(EnvError, match="give a threshold"):
        resolve_cost("Acrobot-v1", {"name": "velocity"})
    with pytest.raises(EnvError, match="'name' must be one of"):
        resolve_cost("Acrobot-v1", {"name": "speed"})
    with pytest.raises(EnvError, match="index 7 is outside"):
        make_env("CartPole-v1", {"name": "observation", "index": 7, "threshold": 1.0})
    with pytest.raises(EnvError, match="x_velocity"):
        env = make_env("CartPole-v1", {"name": "velocity", "threshold": 1.0})
        env.reset(seed=0)
        env.step(0)


def test_rollout_counts_whole_episodes() -> None:
    def act(obs):
        return np.zeros(len(obs), np.int64)

    eps = rollout(lambda: make_env("CartPole-v1"), act, seed=0, episodes=5, n_envs=3)
    assert len(eps) == 5 and all(e.terminated or e.truncated for e in eps)
    eps = rollout(lambda: make_env("CartPole-v1"), act, seed=0, transitions=100, n_envs=3)
    assert sum(len(e) for e in eps) >= 100 and all(e.terminated for e in eps)


TINY = dict(steps=1024, transitions=300, checkpoints=4, eval_episodes=2, n_envs=4)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole")
    summary = run_collect(CollectConfig(env="CartPole-v1", out=str(out), **TINY))
    return out, summary


def test_cartpole_build_has_five_mixtures_with_references(cartpole) -> None:
    folder, summary = cartpole
    assert not summary["reused"] and set(summary["mixtures"]) == set(MIXTURES)
    data = {m: load_mixture(folder, m) for m in MIXTURES}
    info = data["random"].info
    assert info.discrete and info.act_dim == 2 and info.obs_dim == 4 and info.max_episode_steps == 500
    assert info.references.random_return == pytest.approx(data["random"].returns.mean())
    assert info.references.expert_return == pytest.approx(data["expert"].returns.mean())
    assert info.cost == {"name": "observation", "index": 1, "threshold": 0.3, "what": "cart velocity"}
    for m in ("random", "medium", "expert"):
        assert data[m].transitions >= 300
    assert len(data["medium-expert"].episodes) == len(data["medium"].episodes) + len(data["expert"].episodes)
    meta = info.meta
    assert [c["step"] for c in meta["checkpoints"]] == [256, 512, 768, 1024]
    assert set(meta["seconds"]) == {"train", "random", "expert", "medium"}
    assert meta["collect_s"] == pytest.approx(sum(meta["seconds"].values()))
    best = max(meta["checkpoints"], key=lambda c: (c["eval_return"], c["step"]))
    assert meta["expert_step"] == best["step"]
    assert meta["medium_step"] == pick_medium(meta["checkpoints"], best["step"], info.references, 1 / 3)["step"]
    for e in data["medium"].episodes:  # the recorded cost is the wrapper's rule
        np.testing.assert_array_equal(e.costs, (np.abs(e.observations[1:, 1]) > 0.3).astype(np.float32))
        assert e.actions.dtype == np.int64 and set(np.unique(e.actions)) <= {0, 1}


def test_medium_replay_is_the_learners_own_episodes_until_medium(cartpole) -> None:
    folder, _ = cartpole
    replay = load_mixture(folder, "medium-replay")
    s = read_info(folder).meta["settings"]
    b = load_behaviour(folder / "behaviour", s)
    medium_step = replay.info.meta["medium_step"]
    expected = [e for e, end in zip(b.episodes, b.end_steps) if end <= medium_step]
    assert len(replay.episodes) == len(expected) > 0
    for got, want in zip(replay.episodes, expected):
        np.testing.assert_array_equal(got.observations, want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
    assert sum(len(e) for e in b.episodes) <= 1024 and b.end_steps == sorted(b.end_steps)


def test_same_settings_reuse_the_folder(cartpole, capsys) -> None:
    folder, _ = cartpole
    before = {m: (folder / f"{m}.npz").stat().st_mtime_ns for m in MIXTURES}
    summary = run_collect(CollectConfig(env="CartPole-v1", out=str(folder), **TINY))
    assert summary["reused"] and "reusing them" in capsys.readouterr().err
    assert before == {m: (folder / f"{m}.npz").stat().st_mtime_ns for m in MIXTURES}


def test_a_cut_build_resumes_and_rebuilds_the_same_data(cartpole, tmp_path, capsys) -> None:
    src, _ = cartpole
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    old = {m: load_mixture(folder, m) for m in ("medium", "expert")}
    zips = {p.name: p.stat().st_mtime_ns for p in (folder / "behaviour").glob("*.zip")}
    for m in ("medium", "expert", "medium-replay"):
        (folder / f"{m}.npz").unlink()
    summary = run_collect(CollectConfig(env="CartPole-v1", out=str(folder), **TINY))
    err = capsys.readouterr().err
    assert not summary["reused"] and "reusing the behaviour policy" in err and "reusing random.npz" in err
    assert zips == {p.name: p.stat().st_mtime_ns for p in (folder / "behaviour").glob("*.zip")}
    for m, data in old.items():  # each phase is seeded on its own: the same episodes again
        new = load_mixture(folder, m)
        assert len(new.episodes) == len(data.episodes)
        np.testing.assert_array_equal(new.episodes[-1].actions, data.episodes[-1].actions)
    # other sizes: the mixtures are built again, the behaviour policy is kept
    run_collect(CollectConfig(env="CartPole-v1", out=str(folder), **{**TINY, "transitions": 150}))
    assert "other settings (transitions differ)" in capsys.readouterr().err
    assert load_mixture(folder, "random").info.meta["settings"]["transitions"] == 150


def test_pendulum_build_has_continuous_actions_within_bounds(tmp_path) -> None:
    cfg = CollectConfig(env="Pendulum-v1", out=str(tmp_path), steps=300, transitions=400, checkpoints=3,
                        eval_episodes=1, n_envs=2,
                        algo_kwargs={"learning_starts": 100, "policy_kwargs": {"net_arch": [32, 32]}})
    summary = run_collect(cfg)
    # SB3 writes into policy_kwargs; the settings saved must still match a second identical call
    assert run_collect(cfg)["reused"]
    assert set(summary["mixtures"]) == set(MIXTURES)
    expert = load_mixture(tmp_path, "expert")
    info = expert.info
    assert not info.discrete and info.action_low == [-2.0] and info.action_high == [2.0]
    assert info.meta["algo"] == "sac" and info.meta["algo_kwargs"]["learning_starts"] == 100
    for e in expert.episodes:
        assert e.actions.shape == (200, 1) and np.abs(e.actions).max() <= 2.0 and e.truncated
        np.testing.assert_array_equal(e.costs, (np.abs(e.observations[1:, 2]) > 4.0).astype(np.float32))
    random = load_mixture(tmp_path, "random")
    assert info.references.random_return == pytest.approx(random.returns.mean())
    assert random.transitions >= 400 and len(load_mixture(tmp_path, "medium-replay").episodes) >= 1


def test_bad_settings_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="medium_fraction"):
        run_collect(CollectConfig(env="CartPole-v1", out=str(tmp_path), medium_fraction=1.5))
    with pytest.raises(UserError, match="one env step per checkpoint"):
        run_collect(CollectConfig(env="CartPole-v1", out=str(tmp_path), steps=5, checkpoints=10))


def test_cli_collects_a_tiny_dataset(tmp_path) -> None:
    from rlhfkit.cli import main

    out = tmp_path / "cli"
    rc = main(["offline", "collect", "--env", "CartPole-v1", "--steps", "512", "--transitions", "100",
               "--out", str(out), "--set", "checkpoints=2", "--set", "eval_episodes=1"])
    assert rc == 0 and all((out / f"{m}.npz").exists() for m in MIXTURES)
    assert (out / "config.yaml").exists() and (out / "summary.json").exists()
    assert main(["offline", "export-minari", "--data", str(out), "--mixture", "nope"]) == 2


def test_minari_round_trip(cartpole, tmp_path, monkeypatch) -> None:
    minari = pytest.importorskip("minari")
    folder, _ = cartpole
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # nothing may land in ~/.minari
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    root = "minari"  # a relative root works too
    dataset_id = export_minari(folder, "medium", root)
    assert dataset_id == "rlhfkit/cartpole/medium-v0" and not (tmp_path / "home").exists()
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        export_minari(folder, "medium", root)
    export_minari(folder, "medium", root, overwrite=True)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / root))
    ds = minari.load_dataset(dataset_id)
    ours = load_mixture(folder, "medium")
    assert ds.total_episodes == len(ours.episodes) and ds.total_steps == ours.transitions
    assert ds.storage.metadata["ref_min_score"] == pytest.approx(ours.info.references.random_return)
    for got, want in zip(ds.iterate_episodes(), ours.episodes):
        np.testing.assert_array_equal(got.observations.astype(np.float32), want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        np.testing.assert_array_equal(got.terminations, want.terminations)
        np.testing.assert_array_equal(got.truncations, want.truncations)
        np.testing.assert_array_equal(got.infos["cost"][1:], want.costs)


def test_minari_is_optional(cartpole, tmp_path, monkeypatch) -> None:
    folder, _ = cartpole
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(UserError, match="pip install minari"):
        export_minari(folder, "medium", tmp_path)


def test_config_defaults_come_from_the_registry() -> None:
    from rlhfkit.offline.collect import collect_settings

    s = collect_settings(CollectConfig(env="Hopper-v5"))
    assert s["steps"] == 120_000 and s["transitions"] == 50_000 and s["algo"] == "sac"
    assert s["cost"] == {"name": "velocity", "threshold": 0.7402}
    assert dataclasses.replace(CollectConfig(), env="CartPole-v1").checkpoints == 20
