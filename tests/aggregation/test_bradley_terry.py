"""Bradley-Terry item scores: against choix, by hand, ties, priors, standard errors, reliability."""

import math

import numpy as np
import pytest
import torch

from rlhfkit.aggregation import AggregationError, PairCounts, counts_from_comparisons, fit_bradley_terry
from rlhfkit.aggregation.bradley_terry import bt_nll
from rlhfkit.aggregation.davidson import davidson_loglik
from rlhfkit.aggregation.reliability import fit_with_reliability
from rlhfkit.feedback.records import Comparison, Ranking


def simulate(K: int, n: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=K)
    W = np.zeros((K, K))
    data = []
    for _ in range(n):
        i, j = rng.choice(K, 2, replace=False)
        if rng.random() < 1 / (1 + math.exp(-(u[i] - u[j]))):
            data.append((int(i), int(j)))
            W[i, j] += 1
        else:
            data.append((int(j), int(i)))
            W[j, i] += 1
    return W, data, u


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_choix(seed):
    choix = pytest.importorskip("choix")
    W, data, _ = simulate(8, 400, seed)
    ours = fit_bradley_terry(PairCounts.from_matrix(W)).scores
    ref = choix.opt_pairwise(8, data, alpha=0.0, tol=1e-12)
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=1e-6)
    ref2 = choix.ilsr_pairwise(8, data, alpha=0.0, tol=1e-12)
    np.testing.assert_allclose(ours, ref2 - ref2.mean(), atol=1e-6)


def test_two_items_by_hand():
    # A beat B 3 times, B beat A once: sigmoid(d) = 3/4, d = log 3, centred +-log(3)/2
    res = fit_bradley_terry(PairCounts.from_matrix([[0, 3], [1, 0]], items=["A", "B"]))
    np.testing.assert_allclose(res.scores, [math.log(3) / 2, -math.log(3) / 2], atol=1e-10)
    # Fisher information of d: n p (1 - p) = 4 * 3/16; se(theta_A) = se(d) / 2
    np.testing.assert_allclose(res.se, [0.5 / math.sqrt(0.75)] * 2, atol=1e-10)
    assert res.nll == pytest.approx(-(3 * math.log(0.75) + math.log(0.25)))


def test_nll_goes_through_ops_bradley_terry():
    theta = np.array([0.3, -0.1, 0.5])
    W = np.array([[0, 2, 1], [1, 0, 0], [3, 1, 0]], dtype=float)
    expected = -sum(W[i, j] * math.log(1 / (1 + math.exp(-(theta[i] - theta[j]))))
                    for i in range(3) for j in range(3) if W[i, j])
    assert bt_nll(theta, W) == pytest.approx(expected, rel=1e-6)  # ops computes in float32


def test_gradient_vanishes_at_the_optimum_by_autograd():
    W, _, _ = simulate(5, 200, 3)
    res = fit_bradley_terry(PairCounts.from_matrix(W))
    t = torch.tensor(res.scores, requires_grad=True, dtype=torch.float64)
    d = t[:, None] - t[None, :]
    ll = (torch.as_tensor(W) * torch.nn.functional.logsigmoid(d)).sum()
    ll.backward()
    assert t.grad.abs().max() < 1e-8


def _nll64(theta: np.ndarray, W: np.ndarray) -> float:
    return float((W * np.logaddexp(0.0, -(theta[:, None] - theta[None, :]))).sum())


def test_standard_errors_match_numerical_hessian():
    W, _, _ = simulate(4, 300, 4)
    res = fit_bradley_terry(PairCounts.from_matrix(W))
    bt_nll = _nll64
    h, K = 1e-4, 4
    H = np.zeros((K, K))
    for a in range(K):
        for b in range(K):
            ea, eb = np.eye(K)[a] * h, np.eye(K)[b] * h
            H[a, b] = (bt_nll(res.scores + ea + eb, W) - bt_nll(res.scores + ea - eb, W)
                       - bt_nll(res.scores - ea + eb, W) + bt_nll(res.scores - ea - eb, W)) / (4 * h * h)
    np.testing.assert_allclose(res.se, np.sqrt(np.diag(np.linalg.pinv(H, rcond=1e-4, hermitian=True))), rtol=1e-4)


def test_ties_count_as_half_wins():
    tie = PairCounts.from_matrix([[0, 1], [1, 0]], ties=[[0, 2], [2, 0]])
    half = PairCounts.from_matrix([[0, 2], [2, 0]])
    np.testing.assert_allclose(fit_bradley_terry(tie).scores, fit_bradley_terry(half).scores)
    np.testing.assert_allclose(fit_bradley_terry(tie).scores, [0, 0], atol=1e-12)


def test_davidson_by_hand():
    # two equal items: wins 2-2 with 4 ties. MLE: theta equal, P(tie) = nu / (2 + nu) = 1/2 -> nu = 2
    counts = PairCounts.from_matrix([[0, 2], [2, 0]], ties=[[0, 4], [4, 0]])
    res = fit_bradley_terry(counts, ties="davidson")
    assert res.nu == pytest.approx(2.0, rel=1e-8)
    np.testing.assert_allclose(res.scores, [0, 0], atol=1e-10)
    x = torch.tensor([0.0, 0.0, math.log(2.0)], dtype=torch.float64)
    ll = davidson_loglik(x, torch.as_tensor(counts.wins), torch.as_tensor(counts.ties)).item()
    assert ll == pytest.approx(4 * math.log(0.25) + 4 * math.log(0.5))
    with pytest.raises(AggregationError, match="at least one tie"):
        fit_bradley_terry(PairCounts.from_matrix([[0, 2], [1, 0]]), ties="davidson")


def test_davidson_ranks_like_bt():
    W, _, u = simulate(5, 300, 5)
    T = np.zeros((5, 5))
    T[0, 1] = T[1, 0] = 5
    T[2, 4] = T[4, 2] = 3
    res = fit_bradley_terry(PairCounts.from_matrix(W, T), ties="davidson")
    half = fit_bradley_terry(PairCounts.from_matrix(W, T))
    assert np.corrcoef(res.scores, half.scores)[0, 1] > 0.99 and res.nu > 0


def test_disconnected_data_needs_a_prior():
    W = np.array([[0, 3, 0], [0, 0, 2], [0, 0, 0]])  # item 0 never loses
    with pytest.raises(AggregationError, match="strongly connected"):
        fit_bradley_terry(PairCounts.from_matrix(W))
    res = fit_bradley_terry(PairCounts.from_matrix(W), l2=0.5)
    assert res.scores[0] > res.scores[1] > res.scores[2] and abs(res.scores.sum()) < 1e-10


def test_counts_from_records_with_weights():
    comps = [Comparison("p", "a", "b"), Comparison("p", "a", "b", labeler="bad"),
             Comparison("p", "b", "a", tie=True, weight=2.0)]
    comps += Ranking("p", ("a", "b", "c")).to_comparisons()
    counts = counts_from_comparisons(comps, labeler_weights={"bad": 0.0})
    assert counts.items == ("a", "b", "c")
    assert counts.wins[0, 1] == pytest.approx(1 + 1 / 3) and counts.ties[0, 1] == 2.0
    assert counts.wins[1, 2] == pytest.approx(1 / 3)


def test_reliability_downweights_a_random_labeler():
    rng = np.random.default_rng(0)
    u = np.linspace(1.5, -1.5, 6)
    names = [f"item{i}" for i in range(6)]
    comps = []
    for _ in range(600):
        i, j = rng.choice(6, 2, replace=False)
        good = rng.random() < 1 / (1 + math.exp(-3 * (u[i] - u[j])))
        comps.append(Comparison("p", names[i], names[j], labeler="good") if good
                     else Comparison("p", names[j], names[i], labeler="good"))
        flip = rng.random() < 0.5
        comps.append(Comparison("p", names[i] if flip else names[j], names[j] if flip else names[i], labeler="noise"))
    result, weights = fit_with_reliability(comps)
    assert weights["good"] > 1.0 and weights["noise"] < 0.2
    assert list(np.argsort(-result.scores)) == list(range(6))
