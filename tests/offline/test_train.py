"""The shared offline training loop: exact resume, a NaN loss stops with a clear error, and a
whole run (train, evaluate at targets or thresholds, report) on a trivial registered env."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest
import torch
from count_env import CountEnv, count_dataset

from rlhfkit.errors import UserError
from rlhfkit.logging import MetricsLogger
from rlhfkit.offline.dataset import save_mixture
from rlhfkit.offline.method import OfflineConfig
from rlhfkit.offline.methods import build_dt
from rlhfkit.offline.train import fit, run_eval, run_train
from rlhfkit.ops.losses import LossOutput
from rlhfkit.runtime import RunDir

ENV_ID = "rlhfkit-test/Count-v0"
if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=CountEnv, max_episode_steps=10)


def _cfg(tmp_path, **kw) -> OfflineConfig:
    base = dict(context=5, hidden=16, layers=1, dropout=0.1, steps=30, batch_size=8, lr=1e-3, warmup=5,
                checkpoint_every=10, eval_episodes=2, seed=3)
    return OfflineConfig(**{**base, **kw})


def _fit(data, cfg, out) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    method = build_dt(data, cfg)
    run = RunDir.create(out, cfg)
    with MetricsLogger(run.path, resume=cfg.resume) as m:
        fit(method, cfg, run, m)
    return method.model


def test_resume_after_a_stop_gives_identical_weights(tmp_path):
    data = count_dataset(20)
    straight = _fit(data, _cfg(tmp_path), tmp_path / "a")
    _fit(data, _cfg(tmp_path, steps=20), tmp_path / "b")  # stops after its step-20 checkpoint
    resumed = _fit(data, _cfg(tmp_path, resume=True), tmp_path / "b")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    fresh = _fit(data, _cfg(tmp_path, seed=4), tmp_path / "c")
    assert not torch.equal(next(iter(fresh.state_dict().values())), next(iter(straight.state_dict().values())))


def test_a_nan_loss_stops_with_the_step_and_what_to_do(tmp_path):
    data = count_dataset(5)
    cfg = _cfg(tmp_path)
    method = build_dt(data, cfg)
    method = dataclasses.replace(method, loss_fn=lambda b: LossOutput(torch.tensor(float("nan"), requires_grad=True)))
    run = RunDir.create(tmp_path / "nan", cfg)
    with MetricsLogger(run.path) as m, pytest.raises(UserError, match=r"nan at step 1.*lr"):
        fit(method, cfg, run, m)


def _dataset_folder(tmp_path):
    data = count_dataset(40)
    data.info.env_id = ENV_ID
    data.info.cost = {}
    data.mixture = "medium-replay"
    save_mixture(tmp_path / "data", data)
    return tmp_path / "data"


def test_a_dt_run_writes_summary_report_and_plots_and_evaluates_again(tmp_path):
    folder = _dataset_folder(tmp_path)
    out = tmp_path / "run"
    s = run_train(_cfg(tmp_path, data=str(folder), out=str(out), eval_every=10))
    assert [p["target_return"] for p in s["targets"]] == pytest.approx([0, 2.5, 5, 7.5, 10], abs=1.0)
    assert s["score"] == s["targets"][-1]["score_mean"] and -1.0 <= s["spearman"] <= 1.0
    assert [p["step"] for p in s["curve"]] == [10, 20]
    for f in ("summary.json", "report.md", "return_vs_target.png", "learning_curve.png", "method.json",
              "config.yaml", "metrics.jsonl"):
        assert (out / f).exists(), f
    again = run_eval(OfflineConfig(out=str(out), targets=[1.0, 9.0], eval_episodes=3))
    assert [p["target_return"] for p in again["targets"]] == [1.0, 9.0]
    assert json.loads((out / "eval.json").read_text())["targets"][0]["target_return"] == 1.0


def test_a_cdt_run_reports_normalized_cost_per_threshold(tmp_path):
    folder = _dataset_folder(tmp_path)
    s = run_train(_cfg(tmp_path, data=str(folder), out=str(tmp_path / "cdt"), method="cdt",
                       thresholds=[2.0, 5.0, 8.0]))
    assert [p["threshold"] for p in s["thresholds"]] == [2.0, 5.0, 8.0]
    for p in s["thresholds"]:
        assert p["norm_cost_mean"] == pytest.approx(p["cost_mean"] / p["threshold"])
    assert s["norm_cost_max"] == max(p["norm_cost_mean"] for p in s["thresholds"])
    assert (tmp_path / "cdt" / "cost_vs_threshold.png").exists()


def test_unknown_method_and_missing_data_are_clear(tmp_path):
    with pytest.raises(UserError, match="--method 'xx'"):
        run_train(_cfg(tmp_path, data=str(tmp_path), method="xx"))
    with pytest.raises(UserError, match="dataset.json: not found"):
        run_train(_cfg(tmp_path, data=str(tmp_path / "nope")))
