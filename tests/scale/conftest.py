"""A micro GPT for the scaling tests: untrained, 1 layer, no dropout (so two runs of the same
seed see the same function), built in a second rather than pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
