"""The reward both sides of `benchmarks/vs_trl.py --tasks grpo` optimize: one plain function,
imported by rlhfkit as `--reward fn:_vs_trl_reward:distinct_words` (called as
`(prompts, responses)`) and handed to TRL's `GRPOTrainer(reward_funcs=[distinct_words])`
(called with keywords `prompts=, completions=, ...`), so the two trainers score the same
completions with the same code. With a chat model TRL hands over conversational completions
(`[{"role": "assistant", "content": text}]`); their text is what is scored, as ours is.

It is the share of distinct words in a completion: cheap (the benchmark times the trainers,
not a reward model) and varied within a group, so group-normalized advantages are not all 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def distinct_words(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Per completion: distinct words / (1 + words), in [0, 1)."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else "".join(m["content"] for m in c)  # a conversational completion
        words = text.split()
        out.append(len(set(words)) / (1 + len(words)))
    return out
