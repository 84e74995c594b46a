"""Shared fixtures: a tiny pretrained GPT on the embedded corpus and an untrained micro GPT,
each built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RLHFKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT pretrained briefly on the review corpus (a save_pretrained folder)."""
    from rlhfkit.algos.pretrain import PretrainConfig, run
    from rlhfkit.config import ModelConfig
    from rlhfkit.train.supervised import OptimConfig

    out = tmp_path_factory.mktemp("tiny_lm")
    cfg = PretrainConfig(out=str(out), model=ModelConfig(n_layer=2, n_head=2, n_embd=64, n_positions=96,
                                                         vocab_size=400),
                         corpus_docs=3000, eval_docs=100,
                         optim=OptimConfig(lr=3e-3, batch_size=32, max_steps=120, checkpoint_every=0))
    run(cfg)
    return out / "final"


@pytest.fixture(scope="session")
def micro_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-layer GPT without dropout (two runs of one seed see the same function),
    built in a second rather than pretrained: for tests of mechanics, not of learning."""
    from rlhfkit.config import ModelConfig
    from rlhfkit.lm.models import build_tiny_gpt, train_tokenizer
    from rlhfkit.runtime import seed_everything
    from rlhfkit.tasks.reviews import ReviewTask

    out = tmp_path_factory.mktemp("micro_lm")
    tok = train_tokenizer(ReviewTask(0).corpus(300), 300)
    seed_everything(0)
    model = build_tiny_gpt(ModelConfig(n_layer=1, n_head=2, n_embd=32, n_positions=64, dropout=0.0), tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
