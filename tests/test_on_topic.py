"""On-topic: does a response name the item its prompt asks about? (`tasks.reviews.names_item`,
the evaluation's `on_topic`, the report's column, and a small pretrain + SFT that learns it.)"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from rlhfkit.tasks.gold import GoldScorer
from rlhfkit.tasks.reviews import CORPUS_MENTIONS, ITEMS, PROMPTS, ReviewTask, item_of, names_item

SALAD = "Write a short review of the salad:"
COFFEE = "Review the coffee maker in a few sentences:"


@pytest.mark.parametrize(("prompt", "response", "named"), [
    (SALAD, " The salad is great.", True),
    (SALAD, " I bought the SALAD last week.", True),             # any case
    (SALAD, " Salads here are fine.", True),                     # plural
    (SALAD, " The salad's dressing is good.", True),             # possessive
    (SALAD, " The salad, the soup and the tea.", True),
    (SALAD, " The soup is great.", False),                       # another item
    (SALAD, " The saladbar is great.", False),                   # whole words only
    (SALAD, "", False),
    ("Tell us about the tea:", " The team is great.", False),    # not a substring match
    ("Tell us about the tea:", " Tea is fine.", True),
    ("What did you think of the watch?", " Both watches broke.", True),  # plural in -es
    (COFFEE, " The coffee maker is loud.", True),
    (COFFEE, " This coffee-maker is loud.", True),               # hyphen or spaces between the words
    (COFFEE, " Two coffee   makers.", True),
    (COFFEE, " The coffee is loud.", False),                     # every word of the item
    (COFFEE, " The maker is loud.", False),
    ("Say something nice:", " The salad is great.", False),      # not a task prompt: no item to name
])
def test_names_item_by_hand(prompt, response, named):
    assert names_item(prompt, response) is named


def test_every_demonstration_names_its_item_and_gold_agrees():
    task, gold, rng = ReviewTask(0), GoldScorer(), random.Random(0)
    for d in task.demonstrations(300):
        item = item_of(d.prompt)
        assert item in ITEMS
        assert names_item(d.prompt, d.response) and gold.parts(d.prompt, d.response)["off_topic"] == 0.0
        other = " " + task.review("toaster" if item == "kettle" else "kettle", 0.5, rng)
        assert not names_item(d.prompt, other) and gold.parts(d.prompt, other)["off_topic"] == 1.0


def test_pretraining_corpus_names_the_item_again_demonstrations_once():
    def mentions(prompt: str, review: str) -> int:
        return sum(names_item(prompt, sentence) for sentence in review.split(". "))

    rng = random.Random(1)
    docs = [ReviewTask(0).example(rng, mentions=CORPUS_MENTIONS) for _ in range(300)]
    assert sum(mentions(p, r) for p, r in docs) / len(docs) > 2.0  # about 1 + 0.75 * 2 later sentences
    assert all(mentions(d.prompt, d.response) == 1 for d in ReviewTask(0).demonstrations(300))
    assert ReviewTask(0).corpus(5)[0].startswith(tuple(t.split("{")[0] for t in PROMPTS))


class _LengthRM:
    """A stand-in reward model: longer is better (the evaluation only needs scores)."""

    def __init__(self, path, max_len: int = 96) -> None:
        self.path = path

    def __call__(self, prompts, responses) -> torch.Tensor:
        return torch.tensor([float(len(r)) for r in responses])


def test_evaluation_reports_on_topic_per_method(tiny_lm, tmp_path, monkeypatch):
    from rlhfkit import evaluate
    from rlhfkit.report import methods_table

    monkeypatch.setattr(evaluate, "RewardModel", _LengthRM)
    cfg = evaluate.EvalConfig(out=str(tmp_path / "eval"), reference=str(tiny_lm), reward_model="stub",
                              policies=[f"again={tiny_lm}"], best_of=[2], n_prompts=12, max_new_tokens=12)
    summary = evaluate.run(cfg)
    methods = summary["methods"]
    assert set(methods) == {"sft", "again", "best_of_2"}
    for m in methods.values():
        assert 0.0 <= m["on_topic"] <= 1.0
        lo, hi = m["on_topic_ci"]
        assert lo <= m["on_topic"] <= hi
    saved = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert saved["methods"]["again"]["on_topic"] == methods["again"]["on_topic"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| on-topic |" in report.splitlines()[2]
    # a hand-made row: the fraction is printed; None (no task prompts) reads n/a
    row = {"winrate_vs_sft": 0.5, "winrate_ci": [0.4, 0.6], "gold": 1.0, "proxy": 0.0, "kl": 0.0}
    table = methods_table({"ppo": dict(row, on_topic=0.25), "dpo": dict(row, on_topic=None),
                           "mine": dict(row, winrate_vs_sft=None, winrate_ci=None, gold=None, on_topic=None)})
    assert "| 0.00 | 0.25 |" in table and "| 0.00 | n/a |" in table
    assert "| mine | n/a | n/a | 0.000 | 0.00 | n/a |" in table  # a task without gold


def test_evaluation_of_a_task_without_gold_leaves_gold_out(tiny_lm, tmp_path, monkeypatch):
    """A prompts file is a task with no gold scorer and no on-topic judge: eval still reports the
    proxy score and KL, and says n/a for the rest instead of scoring with the review task's gold."""
    from rlhfkit import evaluate

    monkeypatch.setattr(evaluate, "RewardModel", _LengthRM)
    prompts = tmp_path / "mine.txt"
    prompts.write_text("Write a short review of the salad:\nSay something kind:\n")
    cfg = evaluate.EvalConfig(out=str(tmp_path / "eval"), reference=str(tiny_lm), reward_model="stub",
                              task=str(prompts), n_prompts=2, max_new_tokens=8)
    m = evaluate.run(cfg)["methods"]["sft"]
    assert m["gold"] is None and m["winrate_vs_sft"] is None and m["on_topic"] is None
    assert m["proxy"] > 0 and [s["prompt"] for s in m["samples"]] == prompts.read_text().splitlines()
    assert "| SFT (reference) | n/a | n/a |" in (tmp_path / "eval" / "report.md").read_text()


def test_on_topic_counts_task_prompts_only():
    from rlhfkit.evaluate import on_topic
    from rlhfkit.tasks.base import PromptsTask

    task = ReviewTask(0)
    assert on_topic(task, [SALAD, SALAD], [" The salad.", " The soup."])[0] == 0.5
    assert on_topic(task, ["Say hi:", SALAD], [" hi", " The salad."])[0] == 1.0
    assert on_topic(task, ["Say hi:"], [" hi"]) == (None, None)
    assert on_topic(PromptsTask((SALAD,)), [SALAD], [" The salad."]) == (None, None)  # a task that cannot tell


@pytest.mark.slow
def test_small_pretrain_and_sft_learn_to_name_the_item(tmp_path):
    """A 2-layer GPT pretrained on the embedded corpus (321 steps) and fine-tuned on demonstrations
    (90 steps), 20-30 s on 2 CPU cores, names the asked item far more often than chance (1/60
    items). Measured with seeds 0, 1, 2: 0.95, 0.95, 0.98 of 64 held-out prompts. The skill appears
    late: with 16,000 documents (214 steps) 0.20-0.30, and with a corpus that names the item once
    per review (CORPUS_MENTIONS = 0) 0.45 (seed 0), so the bar of 0.6 guards both."""
    from rlhfkit.algos import pretrain, sft
    from rlhfkit.train.supervised import OptimConfig
    from rlhfkit.config import ModelConfig
    from rlhfkit.evaluate import on_topic, sample_policy
    from rlhfkit.lm.models import load_policy

    seed = 0
    opt = OptimConfig(checkpoint_every=0, log_every=50)
    pre = pretrain.run(pretrain.PretrainConfig(
        out=str(tmp_path / "pre"), seed=seed, task_seed=seed, corpus_docs=24000, eval_docs=50,
        model=ModelConfig(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=1024),
        optim=replace(opt, lr=5e-3, batch_size=32, epochs=1.0)))
    tuned = sft.run(sft.SFTConfig(out=str(tmp_path / "sft"), model=pre["final"], seed=seed, task_seed=seed,
                                  n_demos=1500, optim=replace(opt, lr=2e-3, epochs=2.0)))
    model, tok = load_policy(tuned["final"])
    prompts = ReviewTask(seed).prompts(64, "eval")
    torch.manual_seed(seed)
    responses, _ = sample_policy(model, tok, prompts, max_new_tokens=24)
    frac, _ = on_topic(ReviewTask(seed), prompts, responses)
    assert frac >= 0.6, responses[:4]
