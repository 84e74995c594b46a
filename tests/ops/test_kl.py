"""ops/kl.py: the three estimators at known log-probs, the per-token penalty, the controllers."""

import math

import pytest
import torch

from rlhfkit.ops.kl import AdaptiveKLController, FixedKLController, kl_estimate, kl_penalized_rewards


def test_kl_estimators_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    r = [math.log(0.25 / 0.5), math.log(0.4 / 0.2)]  # log pi_ref - log pi
    k1 = kl_estimate(logp, ref, "k1")
    k2 = kl_estimate(logp, ref, "k2")
    k3 = kl_estimate(logp, ref, "k3")
    torch.testing.assert_close(k1, torch.tensor([-r[0], -r[1]]))
    torch.testing.assert_close(k2, torch.tensor([0.5 * r[0] ** 2, 0.5 * r[1] ** 2]))
    torch.testing.assert_close(k3, torch.tensor([0.5 - 1 - r[0], 2.0 - 1 - r[1]]))
    assert k1[1].item() < 0  # k1 is negative where the reference likes the token more
    assert kl_estimate(logp, ref).equal(k1)  # k1 is the default


def test_k2_k3_nonnegative_and_zero_at_equal_policies():
    g = torch.Generator().manual_seed(1)
    logp, ref = torch.randn(1000, generator=g) * 3, torch.randn(1000, generator=g) * 3
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()
    for kind in ("k1", "k2", "k3"):
        assert kl_estimate(logp, logp, kind).abs().max().item() == 0.0


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = (p * (p / q).log()).sum()
    logp, ref = p.log(), q.log()
    for kind in ("k1", "k3"):  # expectation under pi = p, computed exactly
        assert (p * kl_estimate(logp, ref, kind)).sum().item() == pytest.approx(true_kl.item(), rel=1e-5)


def test_unknown_kind():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")  # type: ignore[arg-type]


def test_kl_penalized_rewards_places_score_on_last_response_token():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0], [-0.5, -0.5, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, -1.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    score = torch.tensor([10.0, 20.0, 30.0])
    rewards, kl = kl_penalized_rewards(score, logp, ref, mask, beta=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    expected = torch.tensor([[-0.05, 0.0, 0.1 + 10.0], [-0.1 + 20.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    # summed over tokens: r_phi - beta * log(pi / pi_ref)
    torch.testing.assert_close(rewards.sum(1), score * torch.tensor([1.0, 1.0, 0.0]) - 0.1 * kl.sum(1))


def test_kl_penalized_rewards_with_k3():
    logp = torch.tensor([[-1.0, -1.0]])
    ref = torch.tensor([[-1.0 + math.log(2.0), -1.0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([1.0]), logp, ref, torch.ones(1, 2), beta=1.0, kind="k3")
    k3 = 2.0 - 1.0 - math.log(2.0)
    torch.testing.assert_close(kl, torch.tensor([[k3, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-k3, 1.0]]))


def test_adaptive_kl_controller_by_hand():
    c = AdaptiveKLController(value=0.1, target=6.0, horizon=10_000)
    c.update(current_kl=7.2, n_steps=1000)  # error = 7.2 / 6 - 1 = 0.2
    assert c.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    c = AdaptiveKLController(value=0.1, target=6.0, horizon=10_000)
    c.update(current_kl=3.0, n_steps=1000)  # error = -0.5, clipped to -0.2
    assert c.value == pytest.approx(0.1 * (1 - 0.2 * 0.1))
    c = AdaptiveKLController(value=0.1, target=6.0, horizon=10_000)
    c.update(current_kl=600.0, n_steps=1000)  # error = 99, clipped to +0.2
    assert c.value == pytest.approx(0.1 * 1.02)
    c = AdaptiveKLController(value=0.1, target=6.0, horizon=10_000)
    c.update(current_kl=6.6, n_steps=500)  # error = 0.1, inside the clip range
    assert c.value == pytest.approx(0.1 * (1 + 0.1 * 0.05))
    c.update(current_kl=6.0, n_steps=500)  # on target: no change
    assert c.value == pytest.approx(0.1 * 1.005)


def test_controller_state_round_trip():
    a = AdaptiveKLController(value=0.1, target=6.0, horizon=100)
    a.update(8.0, 10)
    b = AdaptiveKLController(value=0.5, target=6.0, horizon=100)
    b.load_state_dict(a.state_dict())
    assert b.value == a.value
    f = FixedKLController(0.3)
    f.update(100.0, 10)
    assert f.value == 0.3
    g = FixedKLController(0.0)
    g.load_state_dict(f.state_dict())
    assert g.value == 0.3
