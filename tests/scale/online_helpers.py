"""What the online-trainer tests share: a reward model on the micro LM."""

from __future__ import annotations

from pathlib import Path


def make_reward_dir(micro_lm: Path, out: Path) -> Path:
    """An untrained scalar head on the micro LM (seeded), saved in `out`: a fixed, arbitrary
    reward is enough to check devices, resume, DDP and LoRA."""
    from rlhfkit.lm.models import reward_model_from
    from rlhfkit.runtime import seed_everything

    seed_everything(1)
    model, tok = reward_model_from(micro_lm)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
