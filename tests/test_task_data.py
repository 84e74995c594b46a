"""Pretraining and SFT take their data from the task given with --task: a user's task with its
own corpus and demonstrations, and a clear error for a task that has none."""

from __future__ import annotations

import json
import textwrap

import pytest

from rlhfkit.cli import main

USER_TASK = """
from rlhfkit.feedback.records import Demonstration


class Greetings:
    name = "greetings"

    def prompts(self, n, split="train"):
        return [f"Greet person {i}:" for i in range(n)]

    def demonstrations(self, n):
        return [Demonstration(f"Greet person {i}:", " Hello there, friend.") for i in range(n)]

    def corpus(self, n):
        return [f"Greet person {i}: Hello there, friend." for i in range(n)]


class PromptsOnly:
    name = "bare"

    def prompts(self, n, split="train"):
        return ["Say hi:"] * n


task = Greetings()
bare = PromptsOnly()
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_greetings.py").write_text(textwrap.dedent(USER_TASK))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_greetings"


def test_sft_trains_on_the_tasks_demonstrations(tiny_lm, tmp_path, user_module):
    out = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_lm), "--task", f"{user_module}:task", "--out", str(out),
                 "--set", "n_demos=40", "--set", "optim.epochs=3", "--set", "optim.lr=3e-3",
                 "--set", "heldout_frac=0.1", "--set", "device=cpu"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["demonstrations"] == 36  # 40 of the task's, 4 held out
    assert s["heldout_nll"] < 0.5 * s["heldout_nll_before"]  # it learned the task's one greeting


def test_pretrain_reads_the_tasks_corpus(tmp_path, user_module):
    out = tmp_path / "pre"
    assert main(["pretrain", "--task", f"{user_module}:task", "--out", str(out), "--set", "corpus_docs=60",
                 "--set", "eval_docs=4", "--set", "model.n_layer=1", "--set", "model.n_embd=32",
                 "--set", "model.n_head=2", "--set", "model.vocab_size=300", "--set", "model.n_positions=16",
                 "--set", "optim.max_steps=2", "--set", "optim.batch_size=4",
                 "--set", "device=cpu"]) == 0
    assert (out / "final" / "model.safetensors").exists()
    # the tokenizer was trained on the task's corpus: its greeting is a few tokens, not characters
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "final")
    assert len(tok(" Hello there, friend.")["input_ids"]) <= 6


@pytest.mark.parametrize(("command", "what"), [("sft", "demonstrations"), ("pretrain", "corpus")])
def test_a_task_without_the_data_is_refused_clearly(tiny_lm, tmp_path, user_module, command, what, capsys):
    args = [command, "--task", f"{user_module}:bare", "--out", str(tmp_path / command), "--set", "device=cpu"]
    if command == "sft":
        args += ["--model", str(tiny_lm)]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert f"task bare has no {what}" in err and "--data" in err
