"""`rlhfkit control train --resume`: a run stopped after a finished round continues from
the next round with its comparisons, curve and metrics, and redoes no finished round."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlhfkit.control import checkpoint as ckpt_lib
from rlhfkit.control.loop import ControlConfig
from rlhfkit.control.train import run_train
from rlhfkit.errors import UserError


class Stop(Exception):
    """Stands in for the process being killed."""


def small_config(out) -> ControlConfig:
    return ControlConfig(env="CartPole-v1", comparisons=20, timesteps=2000, rounds=2, initial_random_steps=500,
                         reward_steps=30, eval_episodes=2, baseline=False, seed=0, out=str(out))


def eval_rounds(run_dir) -> list[int]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["eval/comparisons"] for r in lines if "eval/comparisons" in r]


@pytest.mark.timeout(240)
def test_interrupted_run_resumes_from_the_next_round(tmp_path, monkeypatch) -> None:
    full = run_train(small_config(tmp_path / "full"))

    real_save = ckpt_lib.save_round
    saved: list[int] = []

    def save_then_stop(out, round_idx, *args, **kwargs):
        path = real_save(out, round_idx, *args, **kwargs)
        saved.append(round_idx)
        if round_idx == 1:
            raise Stop
        return path

    monkeypatch.setattr(ckpt_lib, "save_round", save_then_stop)
    cut_dir = tmp_path / "cut"
    with pytest.raises(Stop):
        run_train(small_config(cut_dir))
    assert saved == [0, 1]
    assert ckpt_lib.latest_round(cut_dir).name == "round-1"
    assert not (cut_dir / "summary.json").exists()

    saved.clear()
    resumed = run_train(dataclasses.replace(small_config(cut_dir), resume=True))
    assert saved == [2]  # rounds 0 and 1 were not redone
    assert resumed["comparisons"] == full["comparisons"] == 20
    assert len(resumed["curve"]) == len(full["curve"]) == 2
    assert [p["comparisons"] for p in resumed["curve"]] == [p["comparisons"] for p in full["curve"]]
    assert resumed["curve"][0] == full["curve"][0]  # round 1 came from the checkpoint, identical to the full run
    assert resumed["env_steps"] == full["env_steps"]
    assert eval_rounds(cut_dir) == [p["comparisons"] for p in full["curve"]]  # each round logged once
    assert sorted(p.name for p in (cut_dir / "checkpoints").iterdir()) == ["round-1", "round-2"]  # older ones pruned


@pytest.mark.timeout(120)
def test_resume_with_other_settings_is_a_user_error(tmp_path, monkeypatch) -> None:
    real_save = ckpt_lib.save_round

    def save_then_stop(out, round_idx, *args, **kwargs):
        real_save(out, round_idx, *args, **kwargs)
        raise Stop

    monkeypatch.setattr(ckpt_lib, "save_round", save_then_stop)
    stale = tmp_path / "checkpoints" / "round-9"  # left by an earlier run in the same --out
    stale.mkdir(parents=True)
    (stale / ckpt_lib.STATE_FILE).write_bytes(b"")
    with pytest.raises(Stop):
        run_train(small_config(tmp_path))  # a fresh start (no --resume) drops the old checkpoints
    assert ckpt_lib.latest_round(tmp_path).name == "round-0"
    monkeypatch.setattr(ckpt_lib, "save_round", real_save)
    other = dataclasses.replace(small_config(tmp_path), comparisons=30, resume=True)
    with pytest.raises(UserError, match="comparisons: 20 then, 30 now"):
        run_train(other)


def test_incomplete_or_missing_checkpoints_are_not_resumed(tmp_path) -> None:
    assert ckpt_lib.latest_round(tmp_path) is None
    (tmp_path / "checkpoints" / "round-4").mkdir(parents=True)  # incomplete: no state.pt
    assert ckpt_lib.latest_round(tmp_path) is None
    (tmp_path / "checkpoints" / "round-4" / ckpt_lib.STATE_FILE).write_bytes(b"")
    assert ckpt_lib.latest_round(tmp_path).name == "round-4"
    ckpt_lib.clear(tmp_path)  # what a fresh (not --resume) run does first
    assert ckpt_lib.latest_round(tmp_path) is None


@pytest.mark.timeout(120)
def test_off_policy_agent_resumes_with_its_replay_buffer(tmp_path, monkeypatch) -> None:
    from rlhfkit.control.labelers import SyntheticLabeler
    from rlhfkit.control.loop import train_preference_rl

    cfg = ControlConfig(env="Pendulum-v1", comparisons=6, timesteps=400, rounds=2, initial_random_steps=200,
                        reward_steps=5, eval_episodes=1, baseline=False, seed=0)
    real_save = ckpt_lib.save_round

    def save_then_stop(out, round_idx, *args, **kwargs):
        real_save(out, round_idx, *args, **kwargs)
        if round_idx == 1:
            raise Stop

    monkeypatch.setattr(ckpt_lib, "save_round", save_then_stop)
    with pytest.raises(Stop):
        train_preference_rl(cfg, SyntheticLabeler(seed=1), run_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "round-1" / "replay_buffer.pkl").exists()
    monkeypatch.setattr(ckpt_lib, "save_round", real_save)
    res = train_preference_rl(dataclasses.replace(cfg, resume=True), SyntheticLabeler(seed=1), run_dir=tmp_path)
    buf = res["agent"].replay_buffer
    assert buf.pos == res["agent"].num_timesteps == 400  # round 1's 200 transitions were kept, round 2 added 200
    assert len(res["curve"]) == 2
    assert len(res["learner"].data.mu) == 6
