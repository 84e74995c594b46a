"""`rlhfkit imitate maxent-irl` and `imitate feature-matching` on gridworlds."""

import json

from rlhfkit.cli import main

KEYS = {"return_mean", "expert_return", "expert_transitions", "feature_gap", "policy_agreement"}


def test_maxent_irl_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    out = tmp_path / "me"
    assert main(["imitate", "maxent-irl", "--env", "gridworld-5x5", "--demos", "10", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert KEYS <= set(s)
    assert s["expert_transitions"] == 10 * 20 and s["normalized_score"] >= 0.95
    assert s["return_mean"] <= s["expert_return"] + 1e-9
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/irl/feature_gap"] > rows[-1]["train/irl/feature_gap"]
    assert (out / "reward.png").exists() and (out / "config.yaml").exists()


def test_feature_matching_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    out = tmp_path / "fm"
    assert main(["imitate", "feature-matching", "--env", "gridworld-5x5", "--demos", "5", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert KEYS <= set(s) and s["expert_transitions"] == 5 * 20
    assert s["t_per_iteration"][-1] < s["t_per_iteration"][0]
    assert s["normalized_score"] >= 0.9


def test_bad_env_is_a_user_error(tmp_path):
    assert main(["imitate", "maxent-irl", "--env", "gridworld-5x6", "--out", str(tmp_path / "x")]) == 2
    assert main(["imitate", "maxent-irl", "--demos", "0", "--out", str(tmp_path / "y")]) == 2
