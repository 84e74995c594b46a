"""ops/kl.py: the three estimators at known log-probs, the per-token penalty, the controllers."""

import math

import pytest
import torch

from rlhfkit.ops.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_estimate_is,
    kl_penalized_rewards,
)


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


def test_importance_weighted_k3_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)], requires_grad=True)
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    old = torch.tensor([math.log(0.25), math.log(0.4)])  # ratios pi / pi_old = [2, 0.5]
    k3 = [0.5 - 1 + math.log(2), 2 - 1 - math.log(2)]
    est = kl_estimate_is(logp, ref, old)
    torch.testing.assert_close(est, torch.tensor([2 * k3[0], 0.5 * k3[1]]))
    est.sum().backward()
    # d (rho k3) / d logp = rho (logp - ref_logp) = [2 ln 2, 0.5 (-ln 2)]
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([2 * math.log(2), -0.5 * math.log(2)]))
    # on-policy it is k3 in value
    torch.testing.assert_close(kl_estimate_is(logp, ref, logp.detach()), kl_estimate(logp, ref, "k3"))


def _expected_grad(estimate_under_old) -> torch.Tensor:
    """grad_theta of sum_y pi_old(y) * estimate(y), exactly, for a 3-way categorical pi_theta."""
    theta = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    logp = torch.log_softmax(theta, -1)
    p_old = torch.tensor([0.2, 0.5, 0.3])
    (p_old * estimate_under_old(logp, p_old.log())).sum().backward()
    assert theta.grad is not None
    return theta.grad


def test_importance_weighted_k3_has_the_reverse_kl_gradient_and_k3_does_not():
    ref = torch.tensor([0.6, 0.1, 0.3]).log()
    theta = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    logp = torch.log_softmax(theta, -1)
    (logp.exp() * (logp - ref)).sum().backward()  # KL(pi || pi_ref), exactly
    assert theta.grad is not None
    true_grad = theta.grad
    # samples from pi_old != pi_theta: the weighted k3 is unbiased, so is the weighted k1
    for kind in ("k3", "k1"):
        g = _expected_grad(lambda lp, old, kind=kind: kl_estimate_is(lp, ref, old, kind))
        torch.testing.assert_close(g, true_grad)
    # k3 differentiated as is, even with the samples from pi_theta itself, follows the FORWARD
    # KL(pi_ref || pi): E_pi[(1 - pi_ref/pi) grad log pi] = -sum_y pi_ref grad log pi
    theta2 = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    lp = torch.log_softmax(theta2, -1)
    (lp.exp().detach() * kl_estimate(lp, ref, "k3")).sum().backward()
    theta3 = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    (ref.exp() * (ref - torch.log_softmax(theta3, -1))).sum().backward()
    assert theta2.grad is not None and theta3.grad is not None
    torch.testing.assert_close(theta2.grad, theta3.grad)
    assert (theta2.grad - true_grad).abs().max().item() > 0.02
