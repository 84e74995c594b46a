"""Hand-computed checks of the segment likelihood, the random-answer term and disagreement."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rlhfkit.control.queries import preference_variance, select_queries
from rlhfkit.control.reward import PairData, RewardEnsemble, segment_loss


def linear_member(w: list[float]) -> nn.Module:
    m = nn.Linear(len(w), 1, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([w]))
    return m


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_segment_bradley_terry_by_hand() -> None:
    # r(x) = 1*x0 - 2*x1; segment a: steps (1,0),(0.5,0.5) -> 1 + (0.5-1) = 0.5
    # segment b: steps (0,1),(1,1) -> -2 + (1-2) = -3 ; diff = 3.5
    member = linear_member([1.0, -2.0])
    a = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # (1, 2, 2)
    b = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    data = PairData(a, b, torch.tensor([1.0]))
    assert math.isclose(segment_loss(member, data, noise=0.0).item(), math.log(1 + math.exp(-3.5)), rel_tol=1e-5)
    # the labeler preferred b: -log(1 - sigmoid(3.5))
    data_b = PairData(a, b, torch.tensor([0.0]))
    assert math.isclose(segment_loss(member, data_b, noise=0.0).item(), -math.log(1 - sig(3.5)), rel_tol=1e-5)
    # tie: -(0.5 log p + 0.5 log(1 - p))
    tie = PairData(a, b, torch.tensor([0.5]))
    want = -(0.5 * math.log(sig(3.5)) + 0.5 * math.log(1 - sig(3.5)))
    assert math.isclose(segment_loss(member, tie, noise=0.0).item(), want, rel_tol=1e-5)


def test_random_answer_likelihood_by_hand() -> None:
    member = linear_member([1.0, -2.0])
    a = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    b = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    p = 0.9 * sig(3.5) + 0.05
    got = segment_loss(member, PairData(a, b, torch.tensor([1.0])), noise=0.1).item()
    assert math.isclose(got, -math.log(p), rel_tol=1e-5)
    got_wrong = segment_loss(member, PairData(a, b, torch.tensor([0.0])), noise=0.1).item()
    assert math.isclose(got_wrong, -math.log(1 - p), rel_tol=1e-5)
    # however confident the model, a contrary answer costs at most -log(0.05)
    far = PairData(a * 100, b * 100, torch.tensor([0.0]))
    assert math.isclose(segment_loss(member, far, noise=0.1).item(), -math.log(0.05), rel_tol=1e-4)


def ensemble_of(weights: list[list[float]]) -> RewardEnsemble:
    ens = RewardEnsemble(feature_dim=2, members=len(weights), seed=0)
    ens.members = [linear_member(w) for w in weights]
    return ens


def test_disagreement_is_variance_of_predicted_preference() -> None:
    # segments of one step; member m's return difference = w_m . (a - b) = w_m . (1, 0) = w_m[0]
    ens = ensemble_of([[0.0, 0.0], [2.0, 0.0], [-1.0, 5.0]])
    a = np.array([[[1.0, 0.0]]], dtype=np.float32)  # (1, 1, 2)
    b = np.array([[[0.0, 0.0]]], dtype=np.float32)
    ps = [sig(0.0), sig(2.0), sig(-1.0)]
    mean = sum(ps) / 3
    want = sum((p - mean) ** 2 for p in ps) / 3
    assert np.allclose(preference_variance(ens, a, b), [want], rtol=1e-5)
    # members that agree have zero disagreement
    same = ensemble_of([[1.0, 0.0], [1.0, 3.0]])
    assert np.allclose(preference_variance(same, a, b), [0.0], atol=1e-7)


def test_disagreement_queries_pick_the_most_disputed_pairs(cartpole_info, cartpole_trajs) -> None:
    ens = RewardEnsemble(cartpole_info.feature_dim, members=3, seed=3)
    rng = np.random.default_rng(0)
    qs = select_queries("disagreement", 5, cartpole_info, cartpole_trajs, 10, ens, rng, pool_factor=20)
    assert len(qs) == 5 and [q.id for q in qs] == list(range(5))
    chosen = preference_variance(ens, np.stack([q.a.x for q in qs]), np.stack([q.b.x for q in qs]))
    pool = select_queries("random", 100, cartpole_info, cartpole_trajs, 10, ens, np.random.default_rng(1))
    pool_score = preference_variance(ens, np.stack([q.a.x for q in pool]), np.stack([q.b.x for q in pool]))
    assert chosen.min() >= np.median(pool_score)
    mixed = select_queries("mix", 6, cartpole_info, cartpole_trajs, 10, ens, rng)
    assert len(mixed) == 6


def test_ensemble_fit_learns_a_linear_reward() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 5, 3)).astype(np.float32)
    b = rng.normal(size=(120, 5, 3)).astype(np.float32)
    w = np.array([1.0, -1.0, 0.0])
    mu = ((a @ w).sum(1) > (b @ w).sum(1)).astype(np.float32)
    data = PairData(torch.tensor(a), torch.tensor(b), torch.tensor(mu))
    ens = RewardEnsemble(3, members=2, hidden=16, seed=0)
    train, val = data.subset(np.arange(100)), data.subset(np.arange(100, 120))
    before = ens.accuracy(val)
    m = ens.fit(train, val, steps=300)
    assert m["reward/train_accuracy"] > 0.9
    assert ens.accuracy(val) > max(before, 0.8)
    assert {"reward/val_loss", "reward/l2"} <= set(m)


def test_l2_adapts_to_validation_gap() -> None:
    ens = ensemble_of([[1.0, 0.0]])
    a = torch.tensor([[[1.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0]]])
    good = PairData(a, b, torch.tensor([1.0]))
    bad = PairData(a, b, torch.tensor([0.0]))  # val loss far above train loss
    l2 = ens.l2
    ens.fit(good, bad, steps=1)
    assert ens.l2 == 2 * l2


def test_normalization_centers_on_absorbing_state() -> None:
    ens = ensemble_of([[2.0, 1.0]])
    x = np.array([[1.0, 0.0], [3.0, 0.0]], dtype=np.float32)  # raw rewards 2, 6: std 2
    absorbing = np.array([[0.0, 1.0]], dtype=np.float32)  # raw reward 1
    ens.normalize(x, absorbing)  # deviations 1, 5 from the center: rms sqrt(13)
    assert np.allclose(ens(x), [1 / np.sqrt(13), 5 / np.sqrt(13)])
    assert np.allclose(ens(absorbing), [0.0])
    ens.normalize(x, None)
    assert np.allclose(ens(x), [-1.0, 1.0])
