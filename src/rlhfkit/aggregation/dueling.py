"""Dueling bandits: which pair of items to ask a labeler about next.

- `RoundRobin`: every pair in turn (the uniform baseline).
- `RUCB`: Relative Upper Confidence Bound (Zoghi et al. 2014, Algorithm 1).
- `DoubleTS`: Double Thompson Sampling (Wu & Liu 2016, Algorithm 1).
All three read the same win counts W[i, j] (times i beat j). `BTLabeler` simulates answers with
P(i beats j) = sigmoid(u_i - u_j). `run_duels` plays a strategy against a labeler, records the
per-comparison regret (eps(c*, i) + eps(c*, j)) / 2 with eps(a, b) = P(a beats b) - 1/2 (Zoghi et
al. 2014, sec. 2), and, for identification, stops when an item is certified to beat every other
one with confidence 1 - delta by anytime Hoeffding bounds (`certified_winner`). The same stopping
rule is applied to every strategy, so comparison counts are for the same confidence.

For identification (not regret) the "self_duels" option of RUCB and DTS decides what happens when
the strategy would duel the candidate with itself: the textbook algorithms allow it (zero regret,
no information); `self_duels=False` takes the strongest other challenger instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BTLabeler:
    """Answers 'does i beat j?' with P = sigmoid(u_i - u_j)."""

    utilities: np.ndarray  # (K,)
    rng: np.random.Generator

    @property
    def P(self) -> np.ndarray:
        u = np.asarray(self.utilities)
        return 1.0 / (1.0 + np.exp(-(u[:, None] - u[None, :])))  # (K, K)

    def duel(self, i: int, j: int) -> bool:
        u = self.utilities
        return bool(self.rng.random() < 1.0 / (1.0 + np.exp(-(u[i] - u[j]))))


def _ucb(W: np.ndarray, t: int, alpha: float, delta: float | None = None) -> np.ndarray:
    """U = W / N + sqrt(alpha ln t / N), with x/0 := 1 and U_ii = 1/2 (RUCB line 3); with `delta`,
    the anytime radius of the stopping rule replaces sqrt(alpha ln t / N)."""
    N = W + W.T
    if delta is not None:
        U = np.minimum(W / np.maximum(N, 1) + confidence_radius(N, W.shape[0], delta), 1.0)
    else:
        U = np.where(N > 0, W / np.maximum(N, 1) + np.sqrt(alpha * np.log(max(t, 1)) / np.maximum(N, 1)), 1.0)
    np.fill_diagonal(U, 0.5)
    return U


def _lcb(W: np.ndarray, t: int, alpha: float) -> np.ndarray:
    N = W + W.T
    L = np.where(N > 0, W / np.maximum(N, 1) - np.sqrt(alpha * np.log(max(t, 1)) / np.maximum(N, 1)), 0.0)
    np.fill_diagonal(L, 0.5)
    return L


def _argmax_random(x: np.ndarray, rng: np.random.Generator) -> int:
    best = np.flatnonzero(x == x.max())
    return int(rng.choice(best))


class RoundRobin:
    """Cycle through all K(K-1)/2 pairs in a random order, reshuffled every round."""

    def __init__(self, K: int, rng: np.random.Generator) -> None:
        self.pairs = [(i, j) for i in range(K) for j in range(i + 1, K)]
        self.rng = rng
        self.queue: list[tuple[int, int]] = []

    def select(self, W: np.ndarray, t: int) -> tuple[int, int]:
        if not self.queue:
            self.queue = [self.pairs[k] for k in self.rng.permutation(len(self.pairs))]
        return self.queue.pop()


class RUCB:
    """Zoghi et al. 2014: the candidate c comes from C = {i : U_ij >= 1/2 for all j}, preferring the
    hypothesized best arm B; its opponent d = argmax_j U_jc is the optimistic strongest challenger.

    With `delta` (identification), U uses the stopping rule's anytime radius: then d is exactly the
    item whose duel with c blocks the certificate `certified_winner` checks (as in LUCB, Kalyanakrishnan
    et al. 2012), and c is never dueled with itself."""

    def __init__(self, K: int, rng: np.random.Generator, alpha: float = 0.51, self_duels: bool = True,
                 delta: float | None = None) -> None:
        self.K, self.rng, self.alpha, self.delta = K, rng, alpha, delta
        self.self_duels = self_duels and delta is None
        self.B: set[int] = set()

    def select(self, W: np.ndarray, t: int) -> tuple[int, int]:
        U = _ucb(W, t, self.alpha, self.delta)
        C = [int(i) for i in np.flatnonzero(np.all(U >= 0.5, axis=1))]
        self.B &= set(C)
        if not C:
            c = int(self.rng.integers(self.K))
        elif len(C) == 1:
            self.B = {C[0]}
            c = C[0]
        else:  # B's arm with probability 1/2, the rest of C share the other half
            others = [i for i in C if i not in self.B]
            if self.B and (not others or self.rng.random() < 0.5):
                c = next(iter(self.B))
            else:
                c = int(self.rng.choice(others))
        col = U[:, c].copy()
        if not self.self_duels:
            col[c] = -np.inf
        return c, _argmax_random(col, self.rng)


class DoubleTS:
    """Wu & Liu 2016: candidates with the top optimistic Copeland score; the first arm by a Thompson
    sample of the preference matrix, the second by a Thompson sample of its column among the arms
    not yet known to lose to it (L_{i a1} <= 1/2)."""

    def __init__(self, K: int, rng: np.random.Generator, alpha: float = 0.51, self_duels: bool = True) -> None:
        self.K, self.rng, self.alpha, self.self_duels = K, rng, alpha, self_duels

    def select(self, W: np.ndarray, t: int) -> tuple[int, int]:
        K = self.K
        U, L = _ucb(W, t, self.alpha), _lcb(W, t, self.alpha)
        off = ~np.eye(K, dtype=bool)
        copeland_ucb = np.sum((U > 0.5) & off, axis=1)
        C = copeland_ucb == copeland_ucb.max()
        theta = np.full((K, K), 0.5)
        iu = np.triu_indices(K, 1)
        theta[iu] = self.rng.beta(W[iu] + 1, W.T[iu] + 1)
        theta.T[iu] = 1.0 - theta[iu]
        sampled = np.sum((theta > 0.5) & off, axis=1).astype(float)
        sampled[~C] = -np.inf
        a1 = _argmax_random(sampled, self.rng)
        theta2 = self.rng.beta(W[:, a1] + 1, W[a1, :] + 1)  # theta2[i] ~ P(i beats a1)
        theta2[a1] = 0.5 if self.self_duels else -np.inf
        allowed = L[:, a1] <= 0.5
        if not self.self_duels:
            allowed[a1] = False
        theta2[~allowed] = -np.inf
        if not np.isfinite(theta2).any():
            return a1, a1
        return a1, _argmax_random(theta2, self.rng)


STRATEGIES = {"round-robin": RoundRobin, "rucb": RUCB, "dts": DoubleTS}


def confidence_radius(N: np.ndarray, K: int, delta: float) -> np.ndarray:
    """Anytime two-sided Hoeffding radius for every pair: union bound over the K(K-1)/2 pairs and all
    sample sizes n (sum_n 6/(pi^2 n^2) = 1): sqrt(log(pi^2 K (K-1) n^2 / (6 delta)) / (2n)); inf at n = 0."""
    n = np.maximum(N, 1)
    r = np.sqrt(np.log(np.pi**2 * K * (K - 1) * n**2 / (6.0 * delta)) / (2.0 * n))
    return np.where(N > 0, r, np.inf)


def certified_winner(W: np.ndarray, delta: float, rows: tuple[int, ...] | None = None) -> int | None:
    """The item whose lower confidence bound on P(i beats j) exceeds 1/2 for every j, if any.
    `rows` limits the check to some items (after a duel only its two items can become certified)."""
    K = W.shape[0]
    idx = np.arange(K) if rows is None else np.asarray(rows)
    Wr = W[idx]  # (R, K)
    N = Wr + W[:, idx].T
    lcb = Wr / np.maximum(N, 1) - confidence_radius(N, K, delta)
    lcb[np.arange(len(idx)), idx] = 1.0
    ok = idx[np.all(lcb > 0.5, axis=1)]
    return int(ok[0]) if len(ok) else None


@dataclass
class DuelRun:
    comparisons: int  # comparisons made (to certification, or the budget)
    winner: int | None  # the certified winner (None if the budget ran out)
    regret: np.ndarray = field(repr=False)  # (comparisons,) per-comparison regret
    W: np.ndarray = field(repr=False)  # final win counts


def run_duels(strategy, labeler: BTLabeler, budget: int, delta: float | None = 0.05) -> DuelRun:
    """Ask `budget` comparisons at most; stop at certification when `delta` is given."""
    P = labeler.P
    K = P.shape[0]
    best = int(np.argmax(np.sum(P > 0.5, axis=1)))  # the Condorcet winner of a BT labeler: top utility
    W = np.zeros((K, K))
    regret = np.empty(budget)
    winner = None
    t = 0
    for t in range(1, budget + 1):
        i, j = strategy.select(W, t)
        regret[t - 1] = 0.5 * ((P[best, i] - 0.5) + (P[best, j] - 0.5))
        if i != j:
            if labeler.duel(i, j):
                W[i, j] += 1
            else:
                W[j, i] += 1
            if delta is not None and (winner := certified_winner(W, delta, (i, j))) is not None:
                break
    return DuelRun(t, winner, regret[:t], W)
