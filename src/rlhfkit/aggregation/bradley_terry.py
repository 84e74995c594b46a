"""Bradley-Terry scores for K items from pairwise comparison counts.

P(i beats j) = sigmoid(theta_i - theta_j) (Bradley & Terry 1952). Ties count as half a win for
each side (the cross-entropy target mu = 1/2 of `ops.losses.bradley_terry`), or, as an option,
follow Davidson's (1970) tie model

    P(i > j) = pi_i / (pi_i + pi_j + nu sqrt(pi_i pi_j)),  P(i = j) = nu sqrt(pi_i pi_j) / (same),

with pi = exp(theta). The maximum-likelihood scores are found by Newton's method on the concave
log-likelihood (optionally with an L2 prior), centred to sum to zero; standard errors come from the
inverse observed Fisher information restricted to that centring (its pseudo-inverse).
The reported negative log-likelihood is computed by `rlhfkit.ops.losses.bradley_terry`, the
project's one Bradley-Terry formula; the Newton steps use its analytic derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

import numpy as np

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Comparison


class AggregationError(UserError, ValueError):
    """Comparison data from which the requested scores cannot be estimated."""


@dataclass(frozen=True)
class PairCounts:
    """wins[i, j]: (weighted) times i beat j; ties[i, j] = ties[j, i]: (weighted) ties of i and j."""

    items: tuple[str, ...]
    wins: np.ndarray  # (K, K)
    ties: np.ndarray  # (K, K), symmetric, zero diagonal

    @property
    def n_items(self) -> int:
        return len(self.items)

    def half_wins(self) -> np.ndarray:
        """Wins with each tie counted as half a win for both sides (K, K)."""
        return self.wins + 0.5 * self.ties

    @classmethod
    def from_matrix(cls, wins: np.ndarray, ties: np.ndarray | None = None,
                    items: Iterable[str] | None = None) -> "PairCounts":
        wins = np.asarray(wins, dtype=np.float64)
        K = wins.shape[0]
        if wins.shape != (K, K) or np.any(wins < 0):
            raise AggregationError(f"wins: expected a non-negative (K, K) matrix, got shape {wins.shape}")
        ties = np.zeros((K, K)) if ties is None else np.asarray(ties, dtype=np.float64)
        if ties.shape != (K, K) or not np.allclose(ties, ties.T):
            raise AggregationError("ties: expected a symmetric (K, K) matrix")
        names = tuple(items) if items is not None else tuple(str(i) for i in range(K))
        if len(names) != K:
            raise AggregationError(f"items: expected {K} names, got {len(names)}")
        wins, ties = wins.copy(), ties.copy()
        np.fill_diagonal(wins, 0.0)
        np.fill_diagonal(ties, 0.0)
        return cls(names, wins, ties)


def counts_from_comparisons(comparisons: Iterable[Comparison], labeler_weights: Mapping[str, float] | None = None,
                            items: Iterable[str] | None = None) -> PairCounts:
    """Tally comparisons of response strings; each adds its `weight` times its labeler's reliability
    weight (default 1; labelers missing from `labeler_weights` get 1). Self-comparisons are skipped."""
    comps = list(comparisons)
    names = list(items) if items is not None else sorted({c.chosen for c in comps} | {c.rejected for c in comps})
    index = {name: i for i, name in enumerate(names)}
    K = len(names)
    wins, ties = np.zeros((K, K)), np.zeros((K, K))
    for c in comps:
        if c.chosen == c.rejected:
            continue
        w = c.weight * (labeler_weights.get(c.labeler, 1.0) if labeler_weights and c.labeler is not None else 1.0)
        if w < 0:
            raise AggregationError(f"labeler {c.labeler!r}: reliability weights must be non-negative, got {w}")
        i, j = index[c.chosen], index[c.rejected]
        if c.tie:
            ties[i, j] += w
            ties[j, i] += w
        else:
            wins[i, j] += w
    return PairCounts(tuple(names), wins, ties)


@dataclass(frozen=True)
class BTResult:
    items: tuple[str, ...]
    scores: np.ndarray  # (K,) theta, centred to mean 0
    se: np.ndarray  # (K,) standard errors of the centred scores
    nll: float  # negative log-likelihood of the data (without the prior)
    iterations: int
    tie_model: str
    nu: float | None = None  # Davidson's tie parameter

    def as_dict(self) -> dict[str, float]:
        return {name: float(s) for name, s in zip(self.items, self.scores)}


def strongly_connected(wins: np.ndarray) -> bool:
    """Whether every item beats (directly or through a chain) every other: Zermelo's (1929)
    condition for a finite maximum-likelihood estimate without a prior."""
    A = wins > 0
    K = A.shape[0]
    reach = np.eye(K, dtype=bool) | A
    for _ in range(int(np.ceil(np.log2(max(K, 2)))) + 1):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    return bool(reach.all())


def bt_nll(theta: np.ndarray, wins: np.ndarray) -> float:
    """-sum_{i,j} wins[i, j] log sigmoid(theta_i - theta_j), through `ops.losses.bradley_terry`."""
    i, j = np.nonzero(wins)
    if len(i) == 0:
        return 0.0
    import torch  # here, not at the top: `rlhfkit --help` reads this package without torch

    from rlhfkit.ops.losses import bradley_terry

    t = torch.as_tensor(theta, dtype=torch.float64)
    w = torch.as_tensor(wins[i, j], dtype=torch.float64)
    out = bradley_terry(t[i], t[j], target=1.0, weights=w)
    return float(out.loss) * float(w.sum())


def fit_bradley_terry(counts: PairCounts, ties: Literal["half", "davidson"] = "half", l2: float = 0.0,
                      tol: float = 1e-10, max_iter: int = 200) -> BTResult:
    """Maximum-likelihood (or MAP with an N(0, 1/l2) prior) Bradley-Terry scores."""
    if counts.n_items < 2:
        raise AggregationError(f"need at least 2 items, got {counts.n_items}")
    if ties == "davidson":
        from rlhfkit.aggregation.davidson import fit_davidson

        return fit_davidson(counts, l2=l2, tol=tol, max_iter=max_iter)
    if ties != "half":
        raise AggregationError(f"ties: use 'half' or 'davidson', got {ties!r}")
    W = counts.half_wins()  # (K, K)
    if l2 <= 0 and not strongly_connected(W):
        raise AggregationError("the comparison graph is not strongly connected (some item never loses, never "
                               "wins, or a group never meets the rest): the MLE diverges; add a prior with l2 > 0")
    theta, it = _newton(W, l2, tol, max_iter)
    info = _fisher(theta, W, l2)
    cov = np.linalg.pinv(info) if l2 <= 0 else np.linalg.inv(info)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return BTResult(counts.items, theta, se, bt_nll(theta, W), it, "half")


def _fisher(theta: np.ndarray, W: np.ndarray, l2: float) -> np.ndarray:
    """Observed information -Hessian: a weighted graph Laplacian with weights n_ij p_ij (1 - p_ij), plus l2 I."""
    N = W + W.T
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # (K, K)
    C = N * p * (1.0 - p)
    return np.diag(C.sum(1)) - C + l2 * np.eye(len(theta))


def _newton(W: np.ndarray, l2: float, tol: float, max_iter: int) -> tuple[np.ndarray, int]:
    """Newton's method on the concave log-likelihood, with step halving; theta kept centred."""
    K = W.shape[0]
    N = W + W.T
    theta = np.zeros(K)

    def objective(th: np.ndarray) -> float:
        # the line search needs float64 (`ops.losses.bradley_terry` computes in float32, which
        # only serves to report the fit): sum W_ij log sigmoid(th_i - th_j) - l2/2 |th|^2
        return float(-(W * np.logaddexp(0.0, -(th[:, None] - th[None, :]))).sum() - 0.5 * l2 * th @ th)

    f = objective(theta)
    for it in range(1, max_iter + 1):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = (W - N * p).sum(1) - l2 * theta  # (K,)
        if np.abs(grad).max() < tol:
            return theta - theta.mean(), it
        info = _fisher(theta, W, l2) + (np.ones((K, K)) / K if l2 <= 0 else 0.0)  # pin the mean when l2 = 0
        step = np.linalg.solve(info, grad)
        size = 1.0
        while size > 1e-8:
            cand = theta + size * step
            f_new = objective(cand)
            if f_new >= f - 1e-12:
                break
            size *= 0.5
        theta, f = cand - (cand.mean() if l2 <= 0 else 0.0), f_new
    return theta - theta.mean(), max_iter
