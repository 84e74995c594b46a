"""Which items to ask people about: random, or where a reward-model ensemble disagrees most.

Pure functions over per-member reward scores, for any kind of item: K responses to a
prompt (the LM reward model) or two trajectory segments (the control-task ensemble).

Christiano et al. (2017), sec. 2.2.4: "we sample a large number of pairs of trajectory
segments ..., use each reward predictor in our ensemble to predict which segment will be
preferred from each pair, and then select those trajectories for which the predictions
have the highest variance across ensemble members."  Here each member m predicts
P_m(i > j) = sigmoid(r_m(i) - r_m(j)) (the Bradley-Terry model of ops/losses.py) for
every pair of an item's candidates; an item's score is that probability's variance
across members, averaged over its pairs (`reduce="mean"`) or its most contested pair
(`reduce="max"`).
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal, Sequence

import numpy as np

Reduce = Literal["mean", "max"]


def _pair_probabilities(scores: np.ndarray) -> np.ndarray:
    """(M, K) member scores -> (M, C(K, 2)) Bradley-Terry P(i > j) per member and pair."""
    i, j = np.array(list(combinations(range(scores.shape[1]), 2))).T
    diff = scores[:, i] - scores[:, j]  # (M, P)
    return 0.5 * (1.0 + np.tanh(0.5 * diff))  # = sigmoid(diff), without overflow for large |diff|


def disagreement(member_scores: Sequence[np.ndarray] | np.ndarray, reduce: Reduce = "mean") -> np.ndarray:
    """One score per item: how much the ensemble disagrees about its candidates' order.

    `member_scores[n]` has shape (M, K_n): M ensemble members' rewards for item n's K_n >= 2
    candidates (K may differ between items; a (N, M, K) array works too). Returns (N,).
    """
    out = np.empty(len(member_scores), dtype=np.float64)
    for n, s in enumerate(member_scores):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] < 2:
            raise ValueError(f"item {n}: expected (members, candidates >= 2) scores, got shape {s.shape}")
        var = _pair_probabilities(s).var(axis=0)  # (P,) across members
        out[n] = var.max() if reduce == "max" else var.mean()
    return out


def select(member_scores: Sequence[np.ndarray] | np.ndarray, n: int, method: str = "disagreement",
           reduce: Reduce = "mean", rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the `n` items to ask about: the most disputed first, or `n` at random."""
    count = len(member_scores)
    n = min(n, count)
    if method == "random":
        return (rng or np.random.default_rng()).choice(count, size=n, replace=False)
    if method != "disagreement":
        raise ValueError(f"unknown selection method {method!r}: disagreement or random")
    scores = disagreement(member_scores, reduce)
    return np.argsort(-scores, kind="stable")[:n]
