"""Davidson's (1970) tie model for paired comparisons, fitted by Newton's method.

With pi = exp(theta) and c_ij = log nu + (theta_i + theta_j) / 2:

    log P(i > j) = theta_i - logsumexp(theta_i, theta_j, c_ij)
    log P(i = j) = c_ij    - logsumexp(theta_i, theta_j, c_ij)

The log-likelihood is maximized over (theta, log nu) with exact gradients and Hessians from torch
autograd (K is small), theta centred to mean 0.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfkit.aggregation.bradley_terry import AggregationError, BTResult, PairCounts, strongly_connected


def davidson_loglik(x: torch.Tensor, wins: torch.Tensor, ties: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of (theta, log nu) = x (K + 1,) given wins (K, K) and symmetric ties (K, K)."""
    theta, log_nu = x[:-1], x[-1]
    ti, tj = theta[:, None].expand(-1, len(theta)), theta[None, :].expand(len(theta), -1)
    c = log_nu + 0.5 * (ti + tj)  # (K, K)
    lse = torch.logsumexp(torch.stack([ti, tj, c]), dim=0)  # (K, K)
    upper = torch.triu(torch.ones_like(ties), diagonal=1)
    return (wins * (ti - lse)).sum() + (upper * ties * (c - lse)).sum()


def fit_davidson(counts: PairCounts, l2: float = 0.0, tol: float = 1e-10, max_iter: int = 200) -> BTResult:
    K = counts.n_items
    if counts.ties.sum() <= 0:
        raise AggregationError("the Davidson tie model needs at least one tie (nu would be 0)")
    if l2 <= 0 and not strongly_connected(counts.half_wins()):
        raise AggregationError("the comparison graph is not strongly connected: the MLE diverges; add l2 > 0")
    wins = torch.as_tensor(counts.wins, dtype=torch.float64)
    ties = torch.as_tensor(counts.ties, dtype=torch.float64)
    prior = torch.zeros(K + 1, dtype=torch.float64)
    prior[:K] = l2

    def f(x: torch.Tensor) -> torch.Tensor:
        return davidson_loglik(x, wins, ties) - 0.5 * (prior * x * x).sum()

    pin = np.zeros((K + 1, K + 1))
    pin[:K, :K] = 1.0 / K  # fixes the free shift of theta when there is no prior
    x = torch.zeros(K + 1, dtype=torch.float64)
    value = f(x).item()
    it = 0
    for it in range(1, max_iter + 1):
        grad = torch.autograd.functional.jacobian(f, x).numpy()
        if np.abs(grad).max() < tol:
            break
        info = -torch.autograd.functional.hessian(f, x).numpy() + (pin if l2 <= 0 else 0.0)
        step = torch.as_tensor(np.linalg.solve(info, grad))
        size = 1.0
        while size > 1e-8:
            cand = x + size * step
            cand_value = f(cand).item()
            if cand_value >= value - 1e-12:
                break
            size *= 0.5
        x, value = cand, cand_value
        x[:K] -= x[:K].mean() if l2 <= 0 else 0.0
    info = -torch.autograd.functional.hessian(f, x).numpy()
    cov = np.linalg.pinv(info) if l2 <= 0 else np.linalg.inv(info)
    theta = x[:K].numpy()
    se = np.sqrt(np.clip(np.diag(cov)[:K], 0.0, None))
    nll = -davidson_loglik(x, wins, ties).item()
    return BTResult(counts.items, theta - theta.mean(), se, nll, it, "davidson", float(np.exp(x[-1].item())))
