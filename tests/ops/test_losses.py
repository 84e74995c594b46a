"""ops/losses.py against hand-computed values."""

import math

import pytest
import torch

from rlhfkit.ops.losses import bradley_terry, dpo, ppo_clip, sft_nll, value_loss


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bradley_terry_design_doc_value():
    out = bradley_terry(torch.tensor([1.0]), torch.tensor([0.0]))
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert out.metrics["accuracy"] == 1.0
    assert out.metrics["margin"] == pytest.approx(1.0)


def test_bradley_terry_tie_and_soft_targets():
    c, r = torch.tensor([2.0]), torch.tensor([0.5])
    p = sig(1.5)
    tie = bradley_terry(c, r, target=0.5)
    assert tie.loss.item() == pytest.approx(-(0.5 * math.log(p) + 0.5 * math.log(1 - p)))
    # a tie is minimized at equal scores, where the loss is log 2
    assert bradley_terry(torch.zeros(1), torch.zeros(1), target=0.5).loss.item() == pytest.approx(math.log(2))
    per_pair = torch.tensor([1.0, 0.5])
    out = bradley_terry(torch.tensor([2.0, 2.0]), torch.tensor([0.5, 0.5]), target=per_pair)
    assert out.loss.item() == pytest.approx((-math.log(p) + tie.loss.item()) / 2)


def test_bradley_terry_weights_are_a_weighted_mean():
    c, r = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 1.0, 0.0])
    w = torch.tensor([1.0, 3.0, 0.5])
    per = [math.log(1 + math.exp(-d)) for d in (1.0, -1.0, -2.0)]
    expected = sum(wi * li for wi, li in zip(w.tolist(), per)) / w.sum().item()
    assert bradley_terry(c, r, weights=w).loss.item() == pytest.approx(expected)
    assert bradley_terry(c, r).loss.item() == pytest.approx(sum(per) / 3)
    # what the weighted mean divides by, for weighting data-parallel shards; None: the pairs
    assert bradley_terry(c, r, weights=w).count == pytest.approx(4.5) and bradley_terry(c, r).count is None
    # a uniform weight changes nothing
    assert bradley_terry(c, r, weights=torch.full((3,), 1 / 3)).loss.item() == pytest.approx(sum(per) / 3)


def test_bradley_terry_noise_by_hand():
    eps = 0.1
    p = (1 - eps) * sig(1.0) + eps / 2
    out = bradley_terry(torch.tensor([1.0]), torch.tensor([0.0]), noise=eps)
    assert out.loss.item() == pytest.approx(-math.log(p))
    tie = bradley_terry(torch.tensor([1.0]), torch.tensor([0.0]), target=0.5, noise=eps)
    assert tie.loss.item() == pytest.approx(-(0.5 * math.log(p) + 0.5 * math.log(1 - p)))
    # the noisy likelihood bounds the loss: P >= eps / 2 however wrong the scores
    worst = bradley_terry(torch.tensor([-100.0]), torch.tensor([100.0]), noise=eps)
    assert worst.loss.item() == pytest.approx(-math.log(eps / 2), rel=1e-4)


def test_bradley_terry_accuracy_counts_decided_pairs_only():
    c = torch.tensor([1.0, -1.0, 3.0, 0.2])
    r = torch.tensor([0.0, 0.0, 0.0, 0.0])
    target = torch.tensor([1.0, 1.0, 0.5, 0.0])  # right, wrong, tie (skipped), rejected preferred but c > r
    out = bradley_terry(c, r, target=target)
    assert out.metrics["accuracy"] == pytest.approx(1 / 3)
    assert out.metrics["chosen"] == pytest.approx(0.8)
    assert out.metrics["rejected"] == pytest.approx(0.0)


def test_bradley_terry_gradient_is_sigmoid():
    c = torch.tensor([0.3], requires_grad=True)
    bradley_terry(c, torch.tensor([0.0])).loss.backward()
    assert c.grad.item() == pytest.approx(-(1 - sig(0.3)))


def test_dpo_by_hand_and_equal_to_bradley_terry_on_scaled_log_ratios():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -5.0]), torch.tensor([-11.0, -5.0])
    beta = 0.5
    out = dpo(pc, pr, rc, rr, beta=beta)
    # implicit rewards: chosen 0.5*(1, 1) = (0.5, 0.5); rejected 0.5*(-1, 2) = (-0.5, 1)
    expected = (-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2
    assert out.loss.item() == pytest.approx(expected)
    bt = bradley_terry(beta * (pc - rc), beta * (pr - rr))
    assert out.loss.item() == pytest.approx(bt.loss.item())
    assert out.metrics["accuracy"] == pytest.approx(0.5)
    assert out.metrics["reward_chosen"] == pytest.approx(0.5)
    assert out.metrics["reward_rejected"] == pytest.approx(0.25)
    w = torch.tensor([2.0, 1.0])
    assert dpo(pc, pr, rc, rr, beta=beta, weights=w).loss.item() == pytest.approx(
        bradley_terry(beta * (pc - rc), beta * (pr - rr), weights=w).loss.item())


def test_dpo_at_the_reference_is_log_two():
    x = torch.tensor([-3.0, -7.0])
    assert dpo(x, x, x, x, beta=0.1).loss.item() == pytest.approx(math.log(2))


def _ppo(ratio: float, adv: float, clip: float = 0.2):
    logp = torch.tensor([[math.log(ratio)]])
    return ppo_clip(logp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), clip=clip)


@pytest.mark.parametrize(
    "ratio, adv, loss, clipped",
    [
        (1.1, 2.0, -2.2, 0.0),  # inside the range: plain ratio * A
        (1.5, 2.0, -2.4, 1.0),  # A > 0 and ratio above 1 + eps: clipped at 1.2
        (0.5, 2.0, -1.0, 0.0),  # A > 0 and ratio below 1 - eps: min picks the unclipped (worse) term
        (0.9, -2.0, 1.8, 0.0),  # inside the range, negative advantage
        (0.5, -2.0, 1.6, 1.0),  # A < 0 and ratio below 1 - eps: clipped at 0.8
        (1.5, -2.0, 3.0, 0.0),  # A < 0 and ratio above 1 + eps: unclipped (worse) term kept
    ],
)
def test_ppo_clip_by_hand(ratio, adv, loss, clipped):
    out = _ppo(ratio, adv)
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)
    assert out.metrics["clipfrac"] == clipped
    assert out.metrics["ratio_mean"] == pytest.approx(ratio, rel=1e-5)


def test_ppo_clip_gradient_vanishes_when_clipped():
    logp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    ppo_clip(logp, torch.zeros(1, 1), torch.tensor([[2.0]]), torch.ones(1, 1)).loss.backward()
    assert logp.grad.item() == 0.0


def test_ppo_clip_masked_mean_sum_and_metrics():
    logp = torch.log(torch.tensor([[1.5, 1.0, 3.0], [0.5, 1.0, 1.0]]))
    adv = torch.tensor([[1.0, 1.0, 100.0], [-1.0, 4.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    out = ppo_clip(logp, torch.zeros(2, 3), adv, mask, clip=0.2)
    per = [-1.2, -1.0, 0.8 * 1.0, -4.0]
    assert out.loss.item() == pytest.approx(sum(per) / 4)
    assert out.metrics["clipfrac"] == pytest.approx(0.5)
    assert out.metrics["ratio_max"] == pytest.approx(1.5)
    k3 = [0.5 - math.log(1.5), 0.0, -0.5 - math.log(0.5), 0.0]
    assert out.metrics["approx_kl"] == pytest.approx(sum(k3) / 4, rel=1e-5)
    s = ppo_clip(logp, torch.zeros(2, 3), adv, mask, clip=0.2, reduction="sum")
    assert s.loss.item() == pytest.approx(sum(per))


def test_value_loss_with_and_without_clipping():
    values = torch.tensor([[1.0, 0.5, 9.0]])
    old = torch.tensor([[0.5, 0.5, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    plain = value_loss(values, old, returns, mask, clip=None)
    assert plain.loss.item() == pytest.approx(0.5 * (1.0 + 0.25) / 2)
    assert plain.metrics["value_clipfrac"] == 0.0
    assert plain.metrics["value_mse"] == pytest.approx((1.0 + 0.25) / 2)
    # token 0: V moved 0.5 from V_old, clipped to 0.2 -> 0.7; (0.7 - 2)^2 = 1.69 > 1 so the clipped term wins
    clipped = value_loss(values, old, returns, mask, clip=0.2)
    assert clipped.loss.item() == pytest.approx(0.5 * (1.69 + 0.25) / 2)
    assert clipped.metrics["value_clipfrac"] == pytest.approx(0.5)
    # moving towards the return past the clip range: the unclipped error is larger and kept
    far = value_loss(torch.tensor([[3.0]]), torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.ones(1, 1))
    assert far.loss.item() == pytest.approx(0.5 * 9.0)


def test_sft_nll_by_hand():
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.125, 0.9, 0.9]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = sft_nll(logprobs, mask)
    nll = (math.log(2) + math.log(4) + math.log(8)) / 3  # = 2 log 2
    assert out.loss.item() == pytest.approx(nll)
    assert out.metrics["nll"] == pytest.approx(nll)
    assert out.metrics["ppl"] == pytest.approx(4.0, rel=1e-5)
    assert out.metrics["tokens"] == 3
    assert out.count == 3  # a token mean: data-parallel shards are weighted by their tokens
    assert sft_nll(logprobs, mask, reduction="sum").loss.item() == pytest.approx(3 * nll)
