"""KTO (Ethayarajh et al. 2024) through `rlhfkit kto`: the class weights' rule, the mismatched
pairs of its KL estimate, the held-out metrics by hand, a seeded run that learns, determinism,
SIGKILL + --resume, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from tests_helpers import kill_then_resume, sentiment_pairs

from rlhfkit.algos.kto import class_weights, heldout_metrics, kl_partners
from rlhfkit.cli import main
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Comparison, Feedback, to_feedback
from rlhfkit.lm.models import load_policy
from rlhfkit.logging import read_metrics

FAST = ["--set", "optim.checkpoint_every=0", "--set", "optim.log_every=1"]


def _losses(out) -> list[float]:
    return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]


# ---------------------------------------------------------------- pieces by hand

def test_class_weights_follow_the_papers_rule_for_imbalance():
    assert class_weights(100, 100) == (1.0, 1.0)
    assert class_weights(120, 100) == (1.0, 1.0)  # ratio 1.2 is inside [1, 4/3]
    assert class_weights(10, 100) == pytest.approx((10.0, 1.0))  # the paper's 1:10 example, ratio 1
    assert class_weights(400, 100) == pytest.approx((1.0, 3.0))  # ratio 4 -> 4/3, the scarcer class up
    assert class_weights(50, 0) == (1.0, 1.0) and class_weights(0, 50) == (1.0, 1.0)  # one class: nothing to balance
    assert class_weights(10, 100, lambda_d=2.0) == pytest.approx((2.0, 0.2))  # only the auto weight moves
    assert class_weights(10, 100, lambda_d=2.0, lambda_u=1.0) == (2.0, 1.0)  # both given: kept (a warning)
    for ld, lu in ((10, 100), (400, 100), (37, 91)):
        wd, wu = class_weights(ld, lu)
        assert 1.0 - 1e-9 <= wd * ld / (wu * lu) <= 4 / 3 + 1e-9
    with pytest.raises(UserError, match="lambda_u"):
        class_weights(1, 1, lambda_u="balanced")
    with pytest.raises(UserError, match="positive"):
        class_weights(1, 1, lambda_d=0.0)


def test_kl_partners_are_fixed_and_mismatched():
    prompts = [f"p{i // 2}" for i in range(20)]  # chosen and rejected of one comparison sit side by side
    partner = kl_partners(prompts, seed=0)
    assert partner == kl_partners(prompts, seed=0)  # a function of (prompts, seed) alone
    assert partner != kl_partners(prompts, seed=1)
    assert all(prompts[j] != prompts[i] for i, j in enumerate(partner))
    same = kl_partners(["p"] * 5, seed=0)  # one prompt: still another example's response
    assert all(j != i for i, j in enumerate(same))
    assert kl_partners(["only"], seed=0) == [0]


def test_heldout_metrics_by_hand():
    policy = torch.tensor([1.0, 2.0, 0.0, 3.0])
    ref = torch.zeros(4)
    desirable = torch.tensor([True, True, False, False])
    m = heldout_metrics(policy, ref, desirable, beta=0.5)
    # rewards 0.5, 1.0 (desirable) vs 0.0, 1.5: desirable wins 2 of 4 pairs
    assert m["implicit_auc"] == pytest.approx(0.5)
    assert m["implicit_margin"] == pytest.approx(0.75 - 0.75)
    tie = heldout_metrics(torch.tensor([1.0, 1.0, 0.0]), torch.zeros(3), torch.tensor([True, False, False]), 1.0)
    assert tie["implicit_auc"] == pytest.approx((0.5 + 1.0) / 2)
    assert heldout_metrics(policy, ref, torch.ones(4, dtype=torch.bool), 0.1)["implicit_auc"] is None


# ---------------------------------------------------------------- runs

def test_kto_learns_to_prefer_desirable_responses(tiny_lm, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_records(data, sentiment_pairs(96))  # comparisons: chosen desirable, rejected undesirable
    out = tmp_path / "kto"
    assert main(["kto", "--policy", str(tiny_lm), "--data", str(data), "--out", str(out), "--set", "optim.epochs=2",
                 "--set", "optim.batch_size=16", "--set", "heldout_frac=0.25", "--set", "optim.lr=3e-4", *FAST]) == 0
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "final/model.safetensors", "final/tokenizer.json"):
        assert (out / f).exists(), f
    s = json.loads((out / "summary.json").read_text())
    assert s["train_desirable"] * 2 == s["train_examples"] and (s["lambda_d"], s["lambda_u"]) == (1.0, 1.0)
    losses = _losses(out)
    # pi == pi_ref at the start: r = z0 = 0, v = lambda sigma(0), loss = mean(lambda_y - lambda_y / 2)
    assert losses[0] == pytest.approx(0.5, abs=1e-5)
    assert sum(losses[-3:]) / 3 < 0.48
    assert s["heldout_implicit_auc"] > 0.65 and s["heldout_implicit_margin"] > 0  # 0.5 and 0 before training
    before, _ = load_policy(tiny_lm)
    after, _ = load_policy(out / "final")
    assert any(not torch.equal(p, q) for p, q in zip(before.state_dict().values(), after.state_dict().values()))


def test_kto_same_seed_same_losses(tiny_lm, tmp_path):
    data = tmp_path / "fb.jsonl"
    write_records(data, to_feedback(sentiment_pairs(16, seed=2)))
    losses = []
    for i in range(2):
        out = tmp_path / f"kto{i}"
        assert main(["kto", "--policy", str(tiny_lm), "--data", str(data), "--out", str(out), "--seed", "3",
                     "--set", "optim.max_steps=3", "--set", "optim.batch_size=8", "--set", "heldout_frac=0",
                     *FAST]) == 0
        losses.append(_losses(out))
    assert len(losses[0]) == 3 and losses[0] == losses[1]


def test_kto_resume_after_kill_matches_uninterrupted(tiny_lm, tmp_path):
    """Stop after a checkpoint (as kill -9 would), resume, and end with the same weights."""
    data = tmp_path / "pairs.jsonl"
    write_records(data, sentiment_pairs(24, seed=4))
    args = ["kto", "--policy", str(tiny_lm), "--data", str(data), "--seed", "1", "--set", "heldout_frac=0",
            "--set", "optim.max_steps=12", "--set", "optim.checkpoint_every=2", "--set", "optim.batch_size=8"]
    kill_then_resume(args, tmp_path / "full", tmp_path / "part")


def test_only_desirable_feedback_trains(tiny_lm, tmp_path):
    data = tmp_path / "up.jsonl"
    write_records(data, [Feedback(c.prompt, c.chosen, True) for c in sentiment_pairs(8)])
    out = tmp_path / "kto"
    assert main(["kto", "--policy", str(tiny_lm), "--data", str(data), "--out", str(out),
                 "--set", "optim.max_steps=2", "--set", "optim.batch_size=4", "--set", "heldout_frac=0.3",
                 *FAST]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["train_desirable"] == s["train_examples"] and s["heldout_implicit_auc"] is None


@pytest.mark.parametrize("case", ["empty", "only_ties", "demonstrations"])
def test_no_feedback_examples_is_a_clear_error(tiny_lm, tmp_path, capsys, case):
    data = tmp_path / "bad.jsonl"
    if case == "empty":
        data.write_text("")
    elif case == "only_ties":
        write_records(data, [Comparison("p", "a", "b", tie=True), Comparison("q", "c", "d", tie=True)])
    else:
        data.write_text('{"prompt": "p", "response": "r"}\n')
    assert main(["kto", "--policy", str(tiny_lm), "--data", str(data), "--out", str(tmp_path / "kto")]) == 2
    err = capsys.readouterr().err
    assert str(data) in err
    assert {"empty": "empty", "only_ties": "no feedback examples", "demonstrations": "demonstration"}[case] in err
    assert not (tmp_path / "kto" / "final").exists()


def test_missing_arguments_are_a_user_error(tmp_path, capsys):
    assert main(["kto", "--out", str(tmp_path / "kto")]) == 2
    assert "--policy" in capsys.readouterr().err


def test_plan_knows_kto(capsys):
    from rlhfkit.algos.kto import KTOConfig
    from rlhfkit.plan import Settings, build_plan

    plan = build_plan("kto", KTOConfig(), Settings())
    assert not any("reference" in r.component for r in plan.rows)  # reference log-probs, not weights
    sft_like = build_plan("sft", _sft_config(), Settings())
    assert plan.phase_bytes("train") == sft_like.phase_bytes("train")  # one sequence per example with a graph
    assert main(["plan", "kto", "--set", "optim.batch_size=8"]) == 0
    assert "memory plan for `kto`" in capsys.readouterr().out


def _sft_config():
    from rlhfkit.algos.kto import KTOConfig
    from rlhfkit.algos.sft import SFTConfig

    cfg = SFTConfig()
    cfg.optim.batch_size, cfg.max_len = KTOConfig().optim.batch_size, KTOConfig().max_len
    return cfg
