"""A fixture the online-trainer tests share: a reward model on the micro LM."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained scalar head on the micro LM (seeded): a fixed, arbitrary reward is enough
    to check devices, resume, DDP and LoRA."""
    from rlhfkit.lm.models import reward_model_from
    from rlhfkit.runtime import seed_everything

    seed_everything(1)
    model, tok = reward_model_from(micro_lm)
    out = tmp_path_factory.mktemp("micro_rm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
