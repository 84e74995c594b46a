"""Pretrain / SFT / reward model through the CLI: run dirs, learning, formats, bad input, resume."""

from __future__ import annotations

import json
import random

import pytest
from tests_helpers import kill_then_resume, sentiment_pairs

from rlhfkit.cli import main
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Ranking
from rlhfkit.logging import read_metrics
from rlhfkit.tasks.reviews import ReviewTask

FAST = ["--set", "optim.batch_size=16", "--set", "optim.checkpoint_every=0"]


def test_sft_run_dir_and_learning(tiny_lm, tmp_path):
    out = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_lm), "--out", str(out), "--set", "n_demos=200",
                 "--set", "optim.epochs=1", *FAST]) == 0
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "final/model.safetensors", "final/tokenizer.json"):
        assert (out / f).exists(), f
    s = json.loads((out / "summary.json").read_text())
    assert s["heldout_nll"] < s["heldout_nll_before"]
    assert read_metrics(out / "metrics.jsonl")


def test_reward_model_learns_sentiment_and_reports_heldout(tiny_lm, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_records(data, sentiment_pairs(480))
    out = tmp_path / "rm"
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(out),
                 "--set", "optim.epochs=3", "--set", "optim.lr=1e-3", "--set", "heldout_frac=0.25", *FAST]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_heldout"] > 20
    assert s["heldout_accuracy"] > 0.85
    assert s["gold_accuracy"] > 0.9  # the gold scorer agrees with these clear labels
    assert 0.0 <= s["ece"] <= 1.0


def test_rm_defaults_with_nothing_else_given(tiny_lm, tmp_path):
    data = tmp_path / "small.jsonl"
    write_records(data, sentiment_pairs(40))
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(tmp_path / "rm")]) == 0
    assert (tmp_path / "rm" / "final" / "model.safetensors").exists()


def _community_rows(kind: str) -> list[dict]:
    pairs = sentiment_pairs(12, seed=3)
    if kind == "trl":
        return [{"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected} for c in pairs]
    if kind == "hh":
        return [{"chosen": f"\n\nHuman: {c.prompt}\n\nAssistant:{c.chosen}",
                 "rejected": f"\n\nHuman: {c.prompt}\n\nAssistant:{c.rejected}"} for c in pairs]
    return [{"chosen": [{"role": "user", "content": c.prompt}, {"role": "assistant", "content": c.chosen.strip()}],
             "rejected": [{"role": "user", "content": c.prompt}, {"role": "assistant", "content": c.rejected.strip()}]}
            for c in pairs]


@pytest.mark.parametrize("kind", ["trl", "hh", "chat"])
def test_rm_accepts_community_formats(tiny_lm, tmp_path, kind):
    data = tmp_path / f"{kind}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _community_rows(kind)))
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(tmp_path / "rm"),
                 "--set", "optim.max_steps=2", "--set", "heldout_frac=0.3", *FAST]) == 0
    assert json.loads((tmp_path / "rm" / "summary.json").read_text())["train_examples"] > 0


BAD_INPUTS = {
    "malformed": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": \n', ":2:", "malformed JSON"),
    "missing": ('{"prompt": "a", "chosen": "b"}\n', ":1:", "field 'rejected'"),
    "wrong_type": ('{"prompt": "a", "chosen": 3, "rejected": "c"}\n', ":1:", "field 'chosen'"),
    "short_ranking": ('{"type": "ranking", "prompt": "a", "responses": ["x"]}\n', ":1:", "field 'responses'"),
    "empty": ("", "", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_rm_bad_input_names_file_line_field(tiny_lm, tmp_path, capsys, case):
    text, where, what = BAD_INPUTS[case]
    data = tmp_path / "bad.jsonl"
    data.write_text(text)
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(tmp_path / "rm")]) == 2
    msg = capsys.readouterr().err
    assert str(data) + where in msg and what in msg
    assert not (tmp_path / "rm" / "final").exists()


def test_rating_out_of_range_is_refused(tiny_lm, tmp_path, capsys):
    data = tmp_path / "ratings.jsonl"
    data.write_text('{"prompt": "a", "response": "b", "score": 9}\n')
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--objective", "ratings",
                 "--out", str(tmp_path / "rm")]) == 2
    err = capsys.readouterr().err
    assert f"{data}:1:" in err and "field 'score'" in err


def test_ratings_regression_reward_model(tiny_lm, tmp_path):
    rows = []
    for c in sentiment_pairs(80, seed=5):
        rows.append({"prompt": c.prompt, "response": c.chosen, "score": 7})
        rows.append({"prompt": c.prompt, "response": c.rejected, "score": 1})
    data = tmp_path / "ratings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--objective", "ratings",
                 "--out", str(tmp_path / "rm"), "--set", "heldout_frac=0.25", "--set", "optim.epochs=4",
                 "--set", "optim.lr=1e-3", *FAST]) == 0
    assert json.loads((tmp_path / "rm" / "summary.json").read_text())["heldout_accuracy"] > 0.6  # chance is 0.5


def test_rankings_are_weighted_and_training_is_deterministic(tiny_lm, tmp_path):
    task, rng = ReviewTask(1), random.Random(1)
    recs = [Ranking(p, tuple(" " + task.review("kettle", m, rng) for m in (1.0, 0.0, -1.0)))
            for p in task.prompts(30)]
    data = tmp_path / "rank.jsonl"
    write_records(data, recs)
    losses = []
    for i in range(2):
        out = tmp_path / f"rm{i}"
        assert main(["rm", "--model", str(tiny_lm), "--data", str(data), "--out", str(out), "--seed", "3",
                     "--set", "optim.max_steps=4", "--set", "optim.log_every=1", *FAST]) == 0
        losses.append([r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r])
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_pretrain_resume_after_kill_matches_uninterrupted(tmp_path):
    """Stop after a checkpoint (as kill -9 would), resume, and end with the same weights."""
    args = ["pretrain", "--set", "corpus_docs=400", "--set", "eval_docs=20", "--set", "model.n_layer=1",
            "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "model.vocab_size=300",
            "--set", "model.n_positions=64", "--set", "optim.max_steps=40", "--set", "optim.checkpoint_every=5",
            "--set", "optim.batch_size=8"]
    kill_then_resume(args, tmp_path / "full", tmp_path / "part")
