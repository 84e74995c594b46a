"""PPO, REINFORCE, DPO, best-of-n and expert iteration improve their own objectives (tiny, seeded)."""

from __future__ import annotations

import json

import pytest
import torch

from rlhfkit.algos import expert_iteration, ppo, reinforce
from rlhfkit.cli import main
from rlhfkit.feedback.formats import write_records
from rlhfkit.lm.forward import ValueHead, frozen_copy
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.scoring import best_of_n
from rlhfkit.logging import read_metrics
from rlhfkit.ops.kl import best_of_n_kl
from rlhfkit.runtime import seed_everything
from rlhfkit.tasks.reviews import ReviewTask
from rlhfkit.train.online import KLConfig, RolloutConfig, Setup, kl_controller
from rlhfkit.train.rollouts import PromptStream, RewardNormalizer


class ShortIsGood:
    """A toy reward a tiny policy can learn fast: fewer characters is better."""

    def __call__(self, prompts, responses):
        return torch.tensor([-len(r) / 20.0 for r in responses])


def _setup(tiny_lm, seed=0):
    seed_everything(seed)
    policy, tok = load_policy(tiny_lm)
    prompts = ReviewTask(0).prompts(64, "rl")
    return Setup(policy, tok, frozen_copy(policy), ShortIsGood(), PromptStream(prompts, seed), None)


def _ppo_scores(tiny_lm, iters, seed=0):
    s = _setup(tiny_lm, seed)
    cfg = ppo.PPOConfig(rollout=RolloutConfig(batch_prompts=16, max_new_tokens=16), kl=KLConfig(beta=0.01),
                        lr=5e-4, minibatch=8, ppo_epochs=2, seed=seed)
    vh = ValueHead(s.policy.config.hidden_size)
    opt = torch.optim.Adam(list(s.policy.parameters()) + list(vh.parameters()), lr=cfg.lr)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    return [ppo.ppo_iteration(s, s.policy, s.tokenizer, vh, opt, kl_ctl, norm, cfg, it) for it in range(iters)]


@pytest.mark.slow
def test_ppo_improves_reward(tiny_lm):
    hist = _ppo_scores(tiny_lm, 12)
    first = sum(h["rollout/score"] for h in hist[:3]) / 3
    last = sum(h["rollout/score"] for h in hist[-3:]) / 3
    assert last > first + 0.2, (first, last)
    assert hist[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4)  # the policy starts at the reference
    assert hist[-1]["rollout/kl"] > 0


def test_ppo_is_deterministic(tiny_lm):
    a, b = _ppo_scores(tiny_lm, 2, seed=3), _ppo_scores(tiny_lm, 2, seed=3)
    assert [h["ppo/policy_loss"] for h in a] == [h["ppo/policy_loss"] for h in b]


@pytest.mark.slow
def test_reinforce_improves_reward(tiny_lm):
    s = _setup(tiny_lm)
    cfg = reinforce.ReinforceConfig(rollout=RolloutConfig(batch_prompts=16, max_new_tokens=16),
                                    kl=KLConfig(beta=0.01), lr=1e-3)
    opt = torch.optim.Adam(s.policy.parameters(), lr=cfg.lr)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    hist = [reinforce.reinforce_iteration(s, s.policy, s.tokenizer, opt, kl_ctl, norm, cfg) for _ in range(12)]
    first = sum(h["rollout/score"] for h in hist[:3]) / 3
    last = sum(h["rollout/score"] for h in hist[-3:]) / 3
    assert last > first + 0.2, (first, last)


def test_reinforce_leave_one_out_baseline_by_hand():
    r = torch.tensor([1.0, 3.0, 10.0, 20.0])
    assert torch.allclose(reinforce.baseline(r, 2, "leave_one_out"), torch.tensor([3.0, 1.0, 20.0, 10.0]))
    assert torch.allclose(reinforce.baseline(r, 2, "batch_mean"), torch.full((4,), 8.5))
    loss = reinforce.reinforce_loss(torch.tensor([-1.0, -2.0], requires_grad=True), torch.tensor([2.0, -1.0]))
    assert loss.loss.item() == pytest.approx(-(2.0 * -1.0 + -1.0 * -2.0) / 2)


def test_best_of_n_beats_a_single_sample(tiny_lm):
    policy, tok = load_policy(tiny_lm)
    torch.manual_seed(0)
    _, best, scores = best_of_n(policy, tok, ShortIsGood(), ReviewTask(0).prompts(12, "eval"), 8, max_new_tokens=12)
    assert best.mean() > scores.mean() + 0.1
    assert best_of_n_kl(16) == pytest.approx(2.7726 - 0.9375, abs=1e-3)


def test_dpo_fits_preferences(tiny_lm, tmp_path):
    from tests_helpers import sentiment_pairs

    data = tmp_path / "pairs.jsonl"
    write_records(data, sentiment_pairs(160))
    out = tmp_path / "dpo"
    assert main(["dpo", "--policy", str(tiny_lm), "--data", str(data), "--out", str(out), "--set", "optim.epochs=2",
                 "--set", "optim.batch_size=16", "--set", "optim.log_every=1", "--set", "heldout_frac=0.2",
                 "--set", "optim.lr=3e-4"]) == 0
    s = json.loads((out / "summary.json").read_text())
    losses = [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # pi == pi_ref at the start: -log sigmoid(0)
    assert sum(losses[-3:]) / 3 < 0.6
    assert s["heldout_implicit_accuracy"] > 0.65


@pytest.mark.slow
def test_expert_iteration_raises_the_policy_score(tiny_lm, tmp_path):
    cfg = expert_iteration.ExpertIterationConfig(policy=str(tiny_lm), rewards=["fn:tests_helpers:short_is_good"],
                                                 rounds=2,
                                                 prompts_per_round=24, n=6, max_new_tokens=16, out=str(tmp_path))
    cfg.optim.batch_size, cfg.optim.lr, cfg.optim.epochs = 8, 1e-3, 3.0
    s = expert_iteration.run(cfg)
    assert s["rounds"][1]["mean_score"] > s["rounds"][0]["mean_score"] + 0.1


def test_ppo_cli_resume_continues_from_checkpoint(tiny_lm, tmp_path):
    from tests_helpers import sentiment_pairs

    data = tmp_path / "pairs.jsonl"
    write_records(data, sentiment_pairs(40))
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(tmp_path / "rm"),
                 "--set", "optim.max_steps=3"]) == 0
    args = ["ppo", "--policy", str(tiny_lm), "--reward-model", str(tmp_path / "rm" / "final"),
            "--out", str(tmp_path / "ppo"), "--set", "rollout.batch_prompts=8", "--set", "rollout.max_new_tokens=8",
            "--set", "minibatch=8", "--set", "checkpoint_every=2"]
    assert main(args + ["--iterations", "3"]) == 0
    assert (tmp_path / "ppo" / "checkpoints" / "step-2" / "value_head" / "value_head.safetensors").exists()
    assert main(args + ["--iterations", "4", "--resume"]) == 0
    steps = [r["step"] for r in read_metrics(tmp_path / "ppo" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 3, 4]  # the resumed run re-does iteration 3 from the step-2 checkpoint
