"""Labelers: who answers "which of these two clips is better?".

One interface for a simulated and a human labeler, so a run switches with `--labeler`:
`request(queries)` hands over pairs, `answers(wait)` returns the ones answered so far as
(query, mu) with mu = P(first is better): 1, 0, or 0.5 for "equally good". A human may
be slow, so the loop keeps training while answers trickle in.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from rlhfkit.control.queries import Query


class Labeler(Protocol):
    """What the preference-RL loop asks of a labeler."""

    name: str

    def request(self, queries: list[Query]) -> None:
        """Queue pairs to be judged."""

    def answers(self, wait: bool = False) -> list[tuple[Query, float]]:
        """Answers that arrived since the last call; with `wait`, block until at least one
        of the outstanding queries is answered (or the labeler's timeout passes)."""

    def pending(self) -> int:
        """How many requested queries are still unanswered."""


class SyntheticLabeler:
    """The paper's synthetic oracle: prefers the segment with the higher true return.

    `beta`: if set, answers are drawn from Bradley-Terry, P(a > b) = sigmoid(beta (R_a - R_b)),
    instead of always picking the better one. `error`: chance of answering uniformly at
    random (the behaviour the reward likelihood's 10% noise term assumes). Equal returns
    give mu = 0.5 when answering deterministically.
    """

    name = "synthetic"

    def __init__(self, beta: float | None = None, error: float = 0.0, seed: int = 0) -> None:
        if beta is not None and beta <= 0:
            raise ValueError("beta must be positive")
        if not 0.0 <= error <= 1.0:
            raise ValueError("error must be in [0, 1]")
        self.beta, self.error = beta, error
        self.rng = np.random.default_rng(seed)
        self._ready: list[tuple[Query, float]] = []

    def judge(self, r_a: float, r_b: float) -> float:
        """mu for one pair of true returns."""
        if self.error and self.rng.random() < self.error:
            return float(self.rng.integers(2))
        if self.beta is None:
            return 0.5 if r_a == r_b else float(r_a > r_b)
        z = self.beta * (r_a - r_b)
        p = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return float(self.rng.random() < p)

    def request(self, queries: list[Query]) -> None:
        self._ready += [(q, self.judge(q.a.true_return, q.b.true_return)) for q in queries]

    def answers(self, wait: bool = False) -> list[tuple[Query, float]]:
        out, self._ready = self._ready, []
        return out

    def pending(self) -> int:
        return 0

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the answer generator and answers not yet handed over."""
        return {"rng": self.rng.bit_generator.state, "ready": list(self._ready)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._ready = list(state["ready"])
