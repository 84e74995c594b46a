"""Winners of a pairwise preference matrix: Condorcet, Copeland and Borda.

M[i, j] is the share of the comparisons between i and j that i won (ties half), NaN where the two
never met. i beats j when M[i, j] > 1/2.
- Condorcet winner: the item that beats every other one, or none (Condorcet 1785).
- Copeland score: the number of items i beats plus 1/2 per exact draw (Copeland 1951); the
  winners are the items with the top score (a Condorcet winner is the unique Copeland winner).
- Borda score: sum_j M[i, j], the expected number of items i beats (for complete rankings this is
  the positional Borda count); the winners are the items with the top score.
Pairs that never met count as neither a win nor a draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.aggregation.bradley_terry import AggregationError, PairCounts


def preference_matrix(counts: PairCounts) -> np.ndarray:
    """M[i, j] = (wins + ties / 2) / comparisons of i vs j; NaN where i and j never met (K, K)."""
    W = counts.half_wins()
    N = W + W.T
    with np.errstate(invalid="ignore", divide="ignore"):
        M = np.where(N > 0, W / np.where(N > 0, N, 1.0), np.nan)
    np.fill_diagonal(M, np.nan)
    return M


def _check(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise AggregationError(f"preference matrix: expected (K, K), got shape {M.shape}")
    return M


def condorcet_winner(M: np.ndarray) -> int | None:
    M = _check(M)
    K = M.shape[0]
    for i in range(K):
        if all(M[i, j] > 0.5 for j in range(K) if j != i):  # NaN > 0.5 is False
            return i
    return None


def copeland_scores(M: np.ndarray) -> np.ndarray:
    M = _check(M)
    off = ~np.eye(M.shape[0], dtype=bool)
    return np.sum((M > 0.5) & off, axis=1) + 0.5 * np.sum((M == 0.5) & off, axis=1)


def borda_scores(M: np.ndarray) -> np.ndarray:
    M = _check(M)
    return np.nansum(np.where(np.eye(M.shape[0], dtype=bool), np.nan, M), axis=1)


def _top(scores: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.isclose(scores, scores.max(), rtol=0.0, atol=1e-12))]


@dataclass(frozen=True)
class Winners:
    condorcet: int | None
    copeland: list[int]
    borda: list[int]
    copeland_scores: np.ndarray
    borda_scores: np.ndarray


def winners(M: np.ndarray) -> Winners:
    """All three winners of a preference matrix."""
    cop, bor = copeland_scores(M), borda_scores(M)
    return Winners(condorcet_winner(M), _top(cop), _top(bor), cop, bor)


def winners_from_counts(counts: PairCounts) -> Winners:
    return winners(preference_matrix(counts))
