"""Online DPO (Guo et al. 2024): the judges' verdicts, a seeded run moves the weights and repeats
itself, SIGKILL + --resume equals an uninterrupted run, the judged reward rises, and the
simulated labelers judge with the embedded reviews task's gold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.algos.online_dpo import (
    OnlineDPOConfig,
    _dpo_step,
    reward_judge,
    run,
)
from rlhfkit.logging import read_metrics
from rlhfkit.ops.preference import PAIR_LOSSES
from rlhfkit.train.online import RolloutConfig, Setup
from rlhfkit.train.rollouts import PromptStream
from rlhfkit.types import Rollout

HERE = Path(__file__).resolve().parent


def _run(lm: Path, out: Path, iterations: int = 3, **kw) -> dict:
    cfg = dict(policy=str(lm), rewards=["fn:tests_helpers:short_is_good"], out=str(out), device="cpu",
               rollout=RolloutConfig(batch_prompts=8, max_new_tokens=8), lr=1e-2, iterations=iterations,
               checkpoint_every=0)
    return run(OnlineDPOConfig(**{**cfg, **kw}))


def _rollout(prompts: list[str], responses: list[str]) -> Rollout:
    n = len(prompts)
    return Rollout(torch.zeros(n, 3, dtype=torch.long), torch.ones(n, 3, dtype=torch.long),
                   torch.ones(n, 2, dtype=torch.long), 1, tuple(prompts), tuple(responses))


def test_reward_judge_prefers_the_higher_score_and_ties_equal_ones():
    s = Setup(None, None, None, lambda p, r: torch.tensor([len(x) for x in r], dtype=torch.float32),
              PromptStream(["x"], 0), None)
    v = reward_judge(s, _rollout(["a", "a", "b", "b", "c", "c"], ["xx", "x", "x", "xxx", "yy", "zz"]))
    assert v.prefer.tolist() == [1.0, -1.0, 0.0]
    assert v.metrics["rollout/score"] == pytest.approx(11 / 6)


def test_a_batch_of_ties_takes_no_step():
    """Every pair tied: nothing to fit; a fresh Adam's zero step leaves the weights as they were.
    Then a decided batch: the loss is DPO's on the (chosen, rejected) the verdicts order."""
    module = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, -2.0]]))
    s = Setup(module, None, None, None, PromptStream(["x"], 0), None)
    opt = torch.optim.Adam(module.parameters(), lr=0.1)

    def logp() -> torch.Tensor:  # (N,) = 2 pairs of summed log-probs
        w = module.weight[0]
        return torch.stack([w[0], w[1], w[0] * 2, w[1] * 3])

    ones = torch.ones(4)  # response lengths
    assert _dpo_step(s, opt, OnlineDPOConfig(), torch.zeros(2), logp(), torch.zeros(4), ones) == {}
    assert module.weight.tolist() == [[1.0, -2.0]]
    m = _dpo_step(s, opt, OnlineDPOConfig(beta=1.0), torch.tensor([1.0, -1.0]), logp(), torch.zeros(4), ones)
    # pair 0: the first (w0 = 1) beats w1 = -2; pair 1: the second (3 w1 = -6) beats 2 w0 = 2
    d = torch.tensor([1.0 - -2.0, -6.0 - 2.0])
    assert m["online_dpo/loss"] == pytest.approx(torch.nn.functional.softplus(-d).mean().item(), rel=1e-5)
    assert m["online_dpo/accuracy"] == 0.5 and module.weight.tolist() != [[1.0, -2.0]]


@pytest.mark.parametrize("loss", list(PAIR_LOSSES))
def test_every_pair_loss_of_the_table_steps(loss):
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 4, bias=False)
    s = Setup(module, None, None, None, PromptStream(["x"], 0), None)
    before = module.weight.detach().clone()
    logp = -torch.nn.functional.softplus(module(torch.ones(3)))  # (N,) = 2 pairs, log-probs below 0
    m = _dpo_step(s, torch.optim.Adam(module.parameters(), lr=0.1), OnlineDPOConfig(loss=loss),
                  torch.tensor([-1.0, 1.0]), logp, torch.full((4,), -1.0), torch.tensor([2.0, 3.0, 1.0, 4.0]))
    assert {"online_dpo/loss", "online_dpo/accuracy"} <= set(m) and not torch.equal(before, module.weight)


def test_seeded_run_moves_the_weights_and_repeats_itself(micro_lm, tmp_path):
    _run(micro_lm, tmp_path / "a")
    _run(micro_lm, tmp_path / "b")
    a, b = (read_metrics(tmp_path / x / "metrics.jsonl") for x in "ab")
    assert len(a) == 3 and json.dumps(a) == json.dumps(b)  # every metric, NaNs too
    assert {"online_dpo/loss", "online_dpo/accuracy", "rollout/kl", "rollout/score", "rollout/gold",
            "online_dpo/judge_gold_agreement", "online_dpo/tie_fraction"} <= set(a[-1])
    assert a[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-5)  # the policy starts at the reference
    init, final = load_file(str(micro_lm / "model.safetensors")), load_file(str(tmp_path / "a" / "final" /
                                                                                "model.safetensors"))
    assert any(not torch.equal(init[k], final[k]) for k in init if k in final)


@pytest.mark.slow
def test_the_judged_reward_rises(micro_lm, tmp_path):
    """The judge is `short_is_good` (fewer characters is better); measured on the micro LM (seeds
    0, 1, 2, 3; first-4 -> last-4 mean score): +0.41, +0.40, +0.13, +0.24."""
    _run(micro_lm, tmp_path / "up", iterations=24, rollout=RolloutConfig(batch_prompts=16, max_new_tokens=8))
    score = [r["rollout/score"] for r in read_metrics(tmp_path / "up" / "metrics.jsonl")]
    assert sum(score[-4:]) / 4 > sum(score[:4]) / 4 + 0.2, score


def test_labelers_judge_with_the_reviews_gold(micro_lm, tmp_path):
    summary = _run(micro_lm, tmp_path / "lab", iterations=2, judge="labelers", rewards=[])
    rows = read_metrics(tmp_path / "lab" / "metrics.jsonl")
    assert summary["iterations"] == 2 and summary["gold"] is not None
    assert {"rollout/gold", "online_dpo/judge_gold_agreement", "online_dpo/tie_fraction"} <= set(rows[-1])
    assert "rollout/score" not in rows[-1]  # no reward given: nothing but the labelers judges


def test_judge_flip_reverses_verdicts_at_its_rate(micro_lm, tmp_path):
    from rlhfkit.errors import UserError

    _run(micro_lm, tmp_path / "flip", iterations=4, judge_flip=0.4, rollout=RolloutConfig(batch_prompts=16,
                                                                                          max_new_tokens=8))
    flipped = [r["online_dpo/flipped"] for r in read_metrics(tmp_path / "flip" / "metrics.jsonl")]
    assert len(flipped) == 4 and 0.15 < sum(flipped) / 4 < 0.65, flipped  # 64 draws at 0.4
    with pytest.raises(UserError, match="judge_flip"):
        _run(micro_lm, tmp_path / "bad", judge_flip=0.5)


def test_labelers_need_a_gold(micro_lm, tmp_path):
    from rlhfkit.errors import UserError

    prompts = tmp_path / "p.txt"
    prompts.write_text("Say hi:\n")
    with pytest.raises(UserError, match="gold"):
        _run(micro_lm, tmp_path / "nogold", judge="labelers", rewards=[],
             rollout=RolloutConfig(task=str(prompts), batch_prompts=2, max_new_tokens=4))


def _argv(lm: Path, out: Path) -> list[str]:
    return ["online-dpo", "--policy", str(lm), "--judge", "labelers", "--out", str(out), "--iterations", "10",
            "--set", "rollout.batch_prompts=4", "--set", "rollout.max_new_tokens=8", "--set", "checkpoint_every=2",
            "--set", "lr=3e-3", "--set", "device=cpu", "--set", "seed=3"]


@pytest.mark.timeout(180)
def test_sigkill_then_resume_equals_uninterrupted_run(micro_lm, tmp_path):
    """As tests/scale/test_online_resume.py: with the labelers judge, whose noise must come back too."""
    sys.path.insert(0, str(HERE.parent / "scale"))
    from online_helpers import SEQUENCE, child_env, kill_when

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    kill_when(_argv(micro_lm, killed), killed / "checkpoints" / "step-2" / "trainer_state.pt", 120,
              "the run ended before its first checkpoint", "no checkpoint after 120 s")
    assert not (killed / "final").exists(), "the run finished before it was killed: nothing was tested"
    argvs = " ".join(_argv(micro_lm, killed) + ["--resume"]) + "|" + " ".join(_argv(micro_lm, whole))
    proc = subprocess.run([sys.executable, "-c", SEQUENCE, argvs], env=child_env(), capture_output=True, text=True,
                          timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming from" in proc.stderr
    a, b = (load_file(str(r / "final" / "model.safetensors")) for r in (killed, whole))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    rows_k, rows_w = read_metrics(killed / "metrics.jsonl"), read_metrics(whole / "metrics.jsonl")
    assert rows_k[-1]["step"] == 10 and [r["step"] for r in rows_k].count(1) == 1  # resumed, not restarted
    assert json.dumps(rows_k[-1]) == json.dumps(rows_w[-1])
