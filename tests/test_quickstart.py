"""`rlhfkit quickstart --fast`: every stage runs and the report has the promised shape."""

from __future__ import annotations

import json

from rlhfkit.cli import main


def test_quickstart_fast_end_to_end(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--fast", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["methods"]) == {"sft", "ppo", "reinforce", "grpo", "dpo", "best_of_4", "expert_iteration"}
    for m in s["methods"].values():
        lo, hi = m["winrate_ci"]
        assert 0.0 <= m["winrate_vs_sft"] <= 1.0 and lo <= m["winrate_vs_sft"] <= hi
        assert {"gold", "proxy", "kl"} <= set(m) and 0.0 <= m["on_topic"] <= 1.0
    assert s["methods"]["sft"]["kl"] == 0.0  # the reference against itself
    betas = {p["beta"] for p in s["kl_sweep"]}
    assert 0.0 in betas and None in betas  # beta = 0 and the SFT policy itself
    report = (out / "report.md").read_text()
    assert "| PPO |" in report and "| GRPO |" in report and "win-rate vs SFT" in report and "on-topic" in report
    assert (out / "training_curves.png").stat().st_size > 1000 and (out / "kl_sweep.png").stat().st_size > 1000
    # A second call with --resume reuses every finished stage.
    assert main(["quickstart", "--fast", "--out", str(out), "--resume"]) == 0
