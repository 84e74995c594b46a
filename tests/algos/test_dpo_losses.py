"""`rlhfkit dpo --set loss=NAME` for every loss of `ops.preference.PAIR_LOSSES` (issue 17): a tiny
seeded run moves the weights and repeats itself exactly; reference-free losses load and run no
reference; a SimPO run killed with SIGKILL and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests_helpers import kill_then_resume, sentiment_pairs

from rlhfkit.algos import dpo
from rlhfkit.cli import main
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.logging import read_metrics
from rlhfkit.ops.preference import PAIR_LOSSES
from rlhfkit.train.supervised import OptimConfig


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_records(data, sentiment_pairs(16))
    return data


def _cfg(lm: Path, data: Path, out: Path, loss: str, **kw) -> dpo.DPOConfig:
    kw = {"heldout_frac": 0.0, "max_len": 48, "seed": 5, "device": "cpu", **kw}
    return dpo.DPOConfig(policy=str(lm), data=str(data), out=str(out), loss=loss,
                         optim=OptimConfig(lr=3e-3, batch_size=4, max_steps=3, log_every=1, checkpoint_every=0), **kw)


@pytest.mark.parametrize("loss", sorted(PAIR_LOSSES))
def test_each_loss_moves_the_weights_and_repeats_exactly(loss, micro_lm, pairs, tmp_path) -> None:
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert dpo.run(_cfg(micro_lm, pairs, out, loss))["loss"] == loss
    losses = [[r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r] for out in runs]
    assert len(losses[0]) == 3 and all(map(torch.isfinite, torch.tensor(losses[0])))
    assert losses[0] == losses[1]
    init, final = load_file(str(micro_lm / "model.safetensors")), load_file(str(runs[0] / "final" / "model.safetensors"))
    assert any(not torch.equal(init[n], final[n]) for n in init if n in final)


def test_reference_free_losses_load_and_run_no_reference(micro_lm, pairs, tmp_path, monkeypatch) -> None:
    """sigmoid: the policy scores the reference once before training and a reference copy is
    loaded for the held-out accuracy; simpo: neither (one load, the policy's)."""
    calls: dict[str, list[str]] = {"load": [], "score": []}
    real_load, real_score = dpo.load_policy, dpo.pair_logprobs
    monkeypatch.setattr(dpo, "load_policy", lambda *a, **k: calls["load"].append(str(a[0])) or real_load(*a, **k))
    monkeypatch.setattr(dpo, "pair_logprobs", lambda *a, **k: calls["score"].append(k.get("desc", "reference log-probs"))
                        or real_score(*a, **k))
    for loss, loads, scores in (("sigmoid", 2, ["reference log-probs", "held-out log-probs", "held-out reference"]),
                                ("simpo", 1, ["held-out log-probs"])):
        calls["load"].clear(), calls["score"].clear()
        s = dpo.run(_cfg(micro_lm, pairs, tmp_path / loss, loss, heldout_frac=0.25))
        assert len(calls["load"]) == loads and calls["score"] == scores, (loss, calls)
        assert s["n_heldout"] > 0 and 0.0 <= s["heldout_implicit_accuracy"] <= 1.0


def test_cli_sets_the_loss_and_its_hyperparameters(micro_lm, pairs, tmp_path, capsys) -> None:
    base = ["dpo", "--policy", str(micro_lm), "--data", str(pairs), "--set", "max_len=48", "--set", "heldout_frac=0",
            "--set", "optim.max_steps=1", "--set", "device=cpu"]
    assert main([*base, "--out", str(tmp_path / "r"), "--set", "loss=robust", "--set", "label_smoothing=0.2"]) == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "loss: robust" in saved and "label_smoothing: 0.2" in saved
    assert main([*base, "--out", str(tmp_path / "x"), "--set", "loss=dpo2"]) == 2
    assert "sigmoid, ipo, cdpo, robust, hinge, rpo, simpo, orpo" in capsys.readouterr().err
    with pytest.raises(UserError, match="label_smoothing"):
        dpo.run(_cfg(micro_lm, pairs, tmp_path / "y", "cdpo", label_smoothing=0.5))


@pytest.mark.timeout(180)
def test_simpo_resume_after_sigkill_matches_uninterrupted(micro_lm, pairs, tmp_path) -> None:
    args = ["dpo", "--policy", str(micro_lm), "--data", str(pairs), "--set", "loss=simpo", "--set", "max_len=48",
            "--set", "heldout_frac=0", "--set", "device=cpu", "--set", "seed=2", "--set", "optim.batch_size=4",
            "--set", "optim.max_steps=30", "--set", "optim.checkpoint_every=3", "--set", "optim.lr=3e-3"]
    kill_then_resume(args, tmp_path / "full", tmp_path / "part")


def test_token_counts_are_the_response_masks_sums(micro_lm) -> None:
    from rlhfkit.lm.data import collate_preferences, encode_preferences
    from rlhfkit.lm.models import load_policy

    _, tok = load_policy(micro_lm)
    enc = encode_preferences(tok, sentiment_pairs(6), 24)  # some responses cut at 24 tokens
    nc, nr = dpo.pair_token_counts(enc)
    b = collate_preferences(enc, tok.pad_token_id)
    assert torch.equal(nc, b.chosen_response_mask.sum(-1).float())
    assert torch.equal(nr, b.rejected_response_mask.sum(-1).float())
