"""Per-labeler reliability weights for Bradley-Terry aggregation.

A labeler who agrees with the consensus ranking with probability a is worth log(a / (1 - a))
times a perfectly calibrated vote: the weight of a "one-coin" labeler in the Dawid & Skene (1979)
model, which for two classes is the log-odds of its accuracy. We alternate: fit scores with the
current weights, estimate each labeler's accuracy against those scores (with a Beta(1, 1) prior),
reweight. Labelers at or below chance get weight 0.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from rlhfkit.aggregation.bradley_terry import BTResult, counts_from_comparisons, fit_bradley_terry
from rlhfkit.feedback.records import Comparison


def labeler_accuracy(comparisons: Iterable[Comparison], result: BTResult) -> dict[str, tuple[float, float]]:
    """labeler -> (agreements, decided comparisons) against the fitted scores (ties skipped)."""
    score = result.as_dict()
    tally: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for c in comparisons:
        if c.tie or c.labeler is None or c.chosen == c.rejected:
            continue
        agree = score[c.chosen] > score[c.rejected]
        tally[c.labeler][0] += c.weight * agree
        tally[c.labeler][1] += c.weight
    return {k: (v[0], v[1]) for k, v in tally.items()}


def fit_with_reliability(comparisons: list[Comparison], rounds: int = 5, l2: float = 0.0,
                         ties: str = "half") -> tuple[BTResult, dict[str, float]]:
    """Alternate scores and labeler weights `rounds` times; returns the last fit and the weights."""
    weights: dict[str, float] = {}
    result = fit_bradley_terry(counts_from_comparisons(comparisons), ties=ties, l2=l2)
    for _ in range(rounds):
        acc = labeler_accuracy(comparisons, result)
        weights = {}
        for labeler, (agree, n) in acc.items():
            a = (agree + 1.0) / (n + 2.0)
            weights[labeler] = float(max(0.0, np.log(a / (1.0 - a))))
        result = fit_bradley_terry(counts_from_comparisons(comparisons, weights), ties=ties, l2=l2)
    return result, weights
