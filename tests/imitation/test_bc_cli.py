"""`rlhfkit imitate bc|dagger` write a run dir with the summary the issue names."""

from __future__ import annotations

import json

import yaml

from rlhfkit.cli import main


def _fast(*extra: str) -> list[str]:
    return ["--expert", "linear", "--set", "eval_episodes=2", *extra]


def test_imitate_bc_writes_run_dir(tmp_path):
    out = tmp_path / "bc"
    rc = main(["imitate", "bc", "--env", "CartPole-v1", "--demos", "30", "--out", str(out),
               *_fast("--set", "bc.steps=100", "--set", "bc.ensemble=2")])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["expert_transitions"] == 30
    assert summary["expert_return"] == 500.0
    assert 8 <= summary["return_mean"] <= 500
    assert yaml.safe_load((out / "config.yaml").read_text())["bc"]["ensemble"] == 2
    assert (out / "returns.png").stat().st_size > 0 and (out / "policy.pt").exists()
    assert (out / "metrics.jsonl").read_text().strip()


def test_imitate_dagger_writes_run_dir(tmp_path):
    out = tmp_path / "dagger"
    rc = main(["imitate", "dagger", "--env", "CartPole-v1", "--demos", "60", "--rounds", "2", "--out", str(out),
               *_fast("--set", "dagger.bc.steps=100", "--set", "dagger.bc.ensemble=2",
                      "--set", "dagger.eval_episodes=1")])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["expert_transitions"] == 60 and summary["rounds"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["dagger/expert_transitions"] for r in rows] == [30, 60]


def test_bad_input_is_a_user_error(tmp_path, caplog):
    assert main(["imitate", "bc", "--demos", "0", "--out", str(tmp_path / "x"), *_fast()]) == 2
    assert main(["imitate", "bc", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "y"), *_fast()]) == 2
    assert main(["imitate", "bc", "--env", "Acrobot-v1", "--out", str(tmp_path / "z"), *_fast()]) == 2  # linear: CartPole only
