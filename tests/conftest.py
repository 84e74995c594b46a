"""Shared fixtures: a tiny pretrained GPT on the embedded corpus, built once per session."""

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
