"""Mixed precision for the online trainers: sampling and the old/reference log-probs run under the
accelerator's autocast, like the prepared training forward, so PPO's first ratio is 1 in bf16
too (with the no-grad passes in fp32 it is off by about 1e-3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from online_helpers import make_reward_dir

from rlhfkit.cli import main
from rlhfkit.logging import read_metrics


@pytest.fixture(scope="module")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reward_dir(micro_lm, tmp_path_factory.mktemp("micro_rm"))


def test_ppo_bf16_old_and_new_logprobs_agree_at_the_first_step(micro_lm, reward_dir, tmp_path):
    out = tmp_path / "ppo-bf16"
    assert main(["ppo", "--policy", str(micro_lm), "--reward-model", str(reward_dir), "--out", str(out),
                 "--iterations", "1", "--set", "rollout.batch_prompts=8", "--set", "rollout.max_new_tokens=8",
                 "--set", "minibatch=8", "--set", "ppo_epochs=1", "--set", "device=cpu",
                 "--set", "mixed_precision=bf16"]) == 0
    row = read_metrics(out / "metrics.jsonl")[0]
    assert row["ppo/ratio_max"] == pytest.approx(1.0, abs=1e-4)
    assert row["ppo/approx_kl"] == pytest.approx(0.0, abs=1e-9)


def test_unknown_precision_is_a_clear_error(micro_lm, reward_dir, tmp_path):
    from rlhfkit.algos.reinforce import ReinforceConfig, run
    from rlhfkit.errors import UserError

    cfg = ReinforceConfig(policy=str(micro_lm), reward_model=str(reward_dir), out=str(tmp_path / "rf"),
                          mixed_precision="fp8")
    with pytest.raises(UserError, match="'fp8'.*bf16"):
        run(cfg)
