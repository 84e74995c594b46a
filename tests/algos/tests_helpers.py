"""Data builders shared by the trainer tests."""

from __future__ import annotations

import random

from rlhfkit.feedback.records import Comparison
from rlhfkit.tasks.reviews import ReviewTask


def sentiment_pairs(n: int, seed: int = 0) -> list[Comparison]:
    """Clear preferences: a glowing review beats a scathing one of the same item."""
    task, rng = ReviewTask(seed), random.Random(seed)
    out = []
    for _ in range(n):
        item = rng.choice(["kettle", "hotel", "laptop", "park", "tea", "boots"])
        prompt = task.prompt_for(item, rng.randrange(4))
        good, bad = task.review(item, 1.0, rng), task.review(item, -1.0, rng)
        out.append(Comparison(prompt, " " + good, " " + bad))
    return out


def short_is_good(prompts, responses):
    """A reward function (`--reward fn:tests_helpers:short_is_good`): fewer characters is better."""
    return [-len(r) / 20.0 for r in responses]
