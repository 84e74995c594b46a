"""The reward both sides of `benchmarks/vs_trl.py --tasks grpo` optimize: one plain function,
imported by rlhfkit as `--reward fn:_vs_trl_reward:distinct_words` (called as
`(prompts, responses)`) and handed to TRL's `GRPOTrainer(reward_funcs=[distinct_words])`
(called with keywords `prompts=, completions=, ...`), so the two trainers score the same
completions with the same code.

It is the share of distinct words in a completion: cheap (the benchmark times the trainers,
not a reward model) and varied within a group, so group-normalized advantages are not all 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def distinct_words(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
    """Per completion: distinct words / (1 + words), in [0, 1)."""
    out = []
    for text in completions:
        words = text.split()
        out.append(len(set(words)) / (1 + len(words)))
    return out
