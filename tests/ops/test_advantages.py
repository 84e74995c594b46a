"""ops/advantages.py: GAE against closed forms and a hand computation; whiten; returns."""

import pytest
import torch

from rlhfkit.ops.advantages import discounted_returns, gae, whiten


def _batch():
    rewards = torch.tensor([[1.0, 0.5, 2.0, 9.0], [3.0, 7.0, 7.0, 7.0]])
    values = torch.tensor([[0.2, 0.4, 0.8, 5.0], [1.0, 6.0, 6.0, 6.0]])  # garbage past the mask
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    return rewards, values, mask


def test_discounted_returns_by_hand():
    rewards, _, mask = _batch()
    g = discounted_returns(rewards, mask, gamma=0.5)
    expected = torch.tensor([[1 + 0.5 * 0.5 + 0.25 * 2.0, 0.5 + 0.5 * 2.0, 2.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(g, expected)


def test_gae_lambda_one_is_returns_minus_values():
    rewards, values, mask = _batch()
    for gamma in (1.0, 0.9):
        adv, ret = gae(rewards, values, mask, gamma=gamma, lam=1.0)
        returns = discounted_returns(rewards, mask, gamma)
        torch.testing.assert_close(adv, (returns - values) * mask)
        torch.testing.assert_close(ret, returns)
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[3.3, 2.1, 1.2, 0.0], [2.0, 0.0, 0.0, 0.0]]))


def test_gae_lambda_zero_is_one_step_td():
    rewards, values, mask = _batch()
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.0)
    # delta_t = r_t + gamma V_{t+1} - V_t, with V = 0 after the last response token
    expected = torch.tensor([
        [1.0 + 0.9 * 0.4 - 0.2, 0.5 + 0.9 * 0.8 - 0.4, 2.0 - 0.8, 0.0],
        [3.0 - 1.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)


def test_gae_general_by_hand():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25]])
    mask = torch.ones(1, 2)
    gamma, lam = 0.9, 0.5
    d1 = 1.0 - 0.25
    d0 = 0.0 + gamma * 0.25 - 0.5
    adv, _ = gae(rewards, values, mask, gamma=gamma, lam=lam)
    torch.testing.assert_close(adv, torch.tensor([[d0 + gamma * lam * d1, d1]]))


def test_gae_rows_of_different_lengths_are_independent():
    rewards, values, mask = _batch()
    adv, ret = gae(rewards, values, mask, gamma=0.95, lam=0.9)
    for b in range(2):
        n = int(mask[b].sum())
        a1, r1 = gae(rewards[b:b + 1, :n], values[b:b + 1, :n], mask[b:b + 1, :n], gamma=0.95, lam=0.9)
        torch.testing.assert_close(adv[b, :n], a1[0])
        torch.testing.assert_close(ret[b, :n], r1[0])
        assert (adv[b, n:] == 0).all() and (ret[b, n:] == 0).all()


def test_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = whiten(x, mask)
    torch.testing.assert_close(w, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6, rtol=0)  # var = 1 (unbiased)
    w = whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 3.0, 0.0]]), atol=1e-6, rtol=0)
    y = torch.tensor([[2.0, 6.0, 10.0, -4.0]])
    w = whiten(y, torch.ones_like(y))
    assert w.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert w.var().item() == pytest.approx(1.0, rel=1e-5)
