"""Active selection by ensemble disagreement (Christiano et al. 2017, sec. 2.2.4)."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.feedback.selection import disagreement, select


def test_disagreement_by_hand() -> None:
    # Two members, two candidates. Member 1: r = (d, 0), member 2: r = (0, d).
    # P_1 = sigmoid(d), P_2 = sigmoid(-d) = 1 - P_1; variance = (P_1 - 1/2)^2.
    d = 2.0
    p = 1 / (1 + np.exp(-d))
    got = disagreement([np.array([[d, 0.0], [0.0, d]])])
    assert got[0] == pytest.approx((p - 0.5) ** 2)


def test_agreeing_members_score_zero_even_if_offset() -> None:
    # Members that differ only by a constant shift predict the same preferences.
    s = np.array([[1.0, 2.0, 3.0], [11.0, 12.0, 13.0]])
    assert disagreement([s])[0] == pytest.approx(0.0)


def test_ragged_items_reduce_and_large_scores() -> None:
    items = [np.array([[0.0, 0.0], [0.0, 0.0]]),
             np.array([[50.0, -50.0, -500.0], [-50.0, 50.0, -500.0]]),  # agree only on the 3rd
             np.array([[1.0, 0.0], [0.0, 1.0]])]
    mean, top = disagreement(items), disagreement(items, reduce="max")
    assert np.all(np.isfinite(mean)) and top[1] == pytest.approx(0.25)  # P = 1 vs 0 on the (0, 1) pair
    assert mean[1] == pytest.approx(0.25 / 3)
    assert list(select(items, 2)) == [1, 2]
    assert list(select(np.stack([items[0], items[2]]), 1)) == [1]  # an (N, M, K) array works too


def test_random_selection_and_errors() -> None:
    items = [np.zeros((3, 2))] * 5
    got = select(items, 3, method="random", rng=np.random.default_rng(0))
    assert len(set(got.tolist())) == 3
    with pytest.raises(ValueError, match="candidates"):
        disagreement([np.zeros((3, 1))])
    with pytest.raises(ValueError, match="unknown"):
        select(items, 1, method="greedy")
