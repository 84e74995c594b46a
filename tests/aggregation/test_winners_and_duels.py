"""Condorcet/Copeland/Borda winners by hand; dueling bandits against a simulated BT labeler."""

import numpy as np
import pytest

from rlhfkit.aggregation import PairCounts, preference_matrix, winners, winners_from_counts
from rlhfkit.aggregation.dueling import (
    RUCB,
    BTLabeler,
    DoubleTS,
    RoundRobin,
    certified_winner,
    confidence_radius,
    run_duels,
)


def test_condorcet_cycle_has_no_winner():
    # rock-paper-scissors: each beats one, loses to one
    M = np.array([[np.nan, 0.7, 0.2], [0.3, np.nan, 0.8], [0.8, 0.2, np.nan]])
    w = winners(M)
    assert w.condorcet is None
    assert w.copeland == [0, 1, 2]  # one win each
    np.testing.assert_allclose(w.borda_scores, [0.9, 1.1, 1.0])
    assert w.borda == [1]


def test_condorcet_winner_need_not_be_borda_winner():
    # 0 narrowly beats everyone; 1 crushes 2 and 3 but loses narrowly to 0
    M = np.array([[np.nan, 0.55, 0.55, 0.55],
                  [0.45, np.nan, 0.95, 0.95],
                  [0.45, 0.05, np.nan, 0.5],
                  [0.45, 0.05, 0.5, np.nan]])
    w = winners(M)
    assert w.condorcet == 0 and w.copeland == [0]
    assert w.borda == [1]
    np.testing.assert_allclose(w.copeland_scores, [3, 2, 0.5, 0.5])


def test_preference_matrix_from_counts():
    counts = PairCounts.from_matrix([[0, 3, 0], [1, 0, 2], [0, 0, 0]], ties=[[0, 0, 0], [0, 0, 2], [0, 2, 0]])
    M = preference_matrix(counts)
    assert M[0, 1] == pytest.approx(0.75) and M[1, 2] == pytest.approx(3 / 4) and np.isnan(M[0, 2])
    assert winners_from_counts(counts).condorcet is None  # 0 and 2 never met


def test_confidence_radius_and_certificate():
    r = confidence_radius(np.array([[0, 100]]), 2, 0.05)
    assert np.isinf(r[0, 0]) and r[0, 1] == pytest.approx(np.sqrt(np.log(np.pi**2 * 2 * 1e4 / 0.3) / 200))
    W = np.array([[0, 900, 900], [100, 0, 500], [100, 500, 0]], dtype=float)
    assert certified_winner(W, 0.05) == 0
    W[0, 2], W[2, 0] = 5, 4
    assert certified_winner(W, 0.05) is None


def test_rucb_candidate_and_challenger():
    rng = np.random.default_rng(0)
    W = np.array([[0, 50, 50], [10, 0, 30], [10, 30, 0]], dtype=float)
    # U_j0 = 10/60 + sqrt(0.51 ln 200 / 60) = 0.38 < 1/2 = U_00: textbook RUCB duels 0 with itself
    assert RUCB(3, rng).select(W, 200) == (0, 0)
    c, d = RUCB(3, rng, self_duels=False).select(W, 200)
    assert c == 0 and d in (1, 2)  # the only arm with U_0j >= 1/2 everywhere, against a challenger


def test_strategies_pick_valid_pairs():
    rng = np.random.default_rng(1)
    for strat in (RoundRobin(4, rng), RUCB(4, rng), DoubleTS(4, rng), DoubleTS(4, rng, self_duels=False)):
        W = np.zeros((4, 4))
        for t in range(1, 30):
            i, j = strat.select(W, t)
            assert 0 <= i < 4 and 0 <= j < 4
            if i != j:
                W[i, j] += 1


def test_round_robin_covers_every_pair_each_round():
    rr = RoundRobin(5, np.random.default_rng(0))
    pairs = {rr.select(None, t) for t in range(10)}
    assert len(pairs) == 10


def test_rucb_regret_is_sublinear_and_beats_uniform():
    u = np.array([1.0, 0.5, 0.0, -0.5, -1.0])
    rucb = run_duels(RUCB(5, np.random.default_rng(0)), BTLabeler(u, np.random.default_rng(1)), 3000, delta=None)
    rr = run_duels(RoundRobin(5, np.random.default_rng(0)), BTLabeler(u, np.random.default_rng(1)), 3000, delta=None)
    assert rucb.regret[-1000:].mean() < 0.25 * rr.regret[-1000:].mean()
    assert rucb.regret[-1000:].mean() < 0.5 * rucb.regret[:300].mean()


def test_identification_beats_round_robin():
    """The issue's bar on a small instance: >= 3x fewer comparisons for the same confidence."""
    ratios = []
    for seed in range(3):
        u = np.random.default_rng(seed).permutation(np.arange(6) * 0.5)
        best = int(np.argmax(u))
        rucb = run_duels(RUCB(6, np.random.default_rng(seed), delta=0.05), BTLabeler(u, np.random.default_rng(seed)),
                         50000, delta=0.05)
        rr = run_duels(RoundRobin(6, np.random.default_rng(seed)), BTLabeler(u, np.random.default_rng(seed)),
                       50000, delta=0.05)
        assert rucb.winner == best and rr.winner == best
        ratios.append(rr.comparisons / rucb.comparisons)
    assert np.median(ratios) >= 3.0, ratios


def test_borda_from_complete_rankings_is_the_positional_count():
    from rlhfkit.aggregation import counts_from_comparisons
    from rlhfkit.feedback.records import Ranking, expand_to_comparisons

    orders = [("a", "b", "c", "d"), ("b", "a", "d", "c"), ("a", "c", "b", "d")]
    comps = expand_to_comparisons([Ranking("p", o) for o in orders])
    counts = counts_from_comparisons(comps)
    w = winners_from_counts(counts)
    positional = {x: np.mean([len(o) - 1 - o.index(x) for o in orders]) for x in "abcd"}
    np.testing.assert_allclose(w.borda_scores, [positional[x] for x in counts.items])
    assert [counts.items[i] for i in w.borda] == ["a"] and counts.items[w.condorcet] == "a"
