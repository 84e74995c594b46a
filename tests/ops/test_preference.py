"""ops/preference.py: the DPO loss family and KTO against hand-computed values.

Shared example (B = 2), summed log-probs:
    policy chosen   [-2.0, -4.0]   rejected [-3.0, -3.0]
    reference       [-2.5, -3.5]            [-2.5, -3.0]
    tokens          [2, 4]                  [3, 1]
so the log-ratios are chosen [0.5, -0.5], rejected [-0.5, 0.0], h = [1.0, -0.5], and with
beta = 0.1, beta h = [0.1, -0.05]. Below l(x) = log(1 + e^-x) = -log sigmoid(x):
    l(0.1) = 0.644397, l(-0.1) = 0.744397, l(-0.05) = 0.718460, l(0.05) = 0.668460.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.errors import UserError
from rlhfkit.ops.preference import (
    PAIR_LOSSES,
    PairLogps,
    PairLossConfig,
    kto,
    pair_loss,
)


def l(x: float) -> float:  # noqa: E743 - the -log sigmoid of the docstring
    return math.log(1.0 + math.exp(-x))


def _logps(ref: bool = True) -> PairLogps:
    t = torch.tensor
    return PairLogps(t([-2.0, -4.0]), t([-3.0, -3.0]), t([2.0, 4.0]), t([3.0, 1.0]),
                     t([-2.5, -3.5]) if ref else None, t([-2.5, -3.0]) if ref else None)


HP = PairLossConfig(beta=0.1, label_smoothing=0.1, rpo_alpha=1.0, simpo_beta=2.0, simpo_gamma=0.5, orpo_lambda=0.1)


def _loss(name: str, logps: PairLogps | None = None, hp: PairLossConfig = HP, target=1.0, weights=None) -> float:
    return PAIR_LOSSES[name].fn(logps or _logps(), hp, target, weights).loss.item()


def test_hand_values_of_the_reference_losses() -> None:
    # sigmoid (DPO eq. 7): mean(l(0.1), l(-0.05)) = (0.644397 + 0.718460) / 2 = 0.681428
    assert _loss("sigmoid") == pytest.approx((l(0.1) + l(-0.05)) / 2, abs=1e-6)
    assert _loss("sigmoid") == pytest.approx(0.681428, abs=1e-6)
    # ipo (eq. 17): target 1/(2 beta) = 5; ((1 - 5)^2 + (-0.5 - 5)^2) / 2 = (16 + 30.25) / 2
    assert _loss("ipo") == pytest.approx(23.125, abs=1e-5)
    # cdpo: 0.9 l(x) + 0.1 l(-x); pair 1: 0.579957 + 0.074440, pair 2: 0.646614 + 0.066846
    assert _loss("cdpo") == pytest.approx((0.654397 + 0.713460) / 2, abs=1e-6)
    # robust: (0.9 l(x) - 0.1 l(-x)) / 0.8; pair 1: 0.505518 / 0.8, pair 2: 0.579768 / 0.8
    assert _loss("robust") == pytest.approx((0.631897 + 0.724710) / 2, abs=1e-6)
    # hinge: relu(1 - 0.1) = 0.9, relu(1 + 0.05) = 1.05
    assert _loss("hinge") == pytest.approx(0.975, abs=1e-6)
    # rpo: DPO + 1.0 x mean(-(-2)/2, -(-4)/4) = 0.681428 + 1
    assert _loss("rpo") == pytest.approx(1.681428, abs=1e-6)


def test_hand_values_of_the_reference_free_losses() -> None:
    # average log-probs: chosen [-2/2, -4/4] = [-1, -1], rejected [-3/3, -3/1] = [-1, -3]
    # simpo (eq. 6): 2.0 x [-1, -1] - 2.0 x [-1, -3] - 0.5 = [-0.5, 3.5]; l(-0.5) = 0.974077, l(3.5) = 0.029750
    assert _loss("simpo", _logps(ref=False)) == pytest.approx((0.974077 + 0.029750) / 2, abs=1e-6)
    # orpo (eq. 6-7): log odds of p = e^a: a = -1 -> log(0.367879 / 0.632121) = -0.541325,
    # a = -3 -> log(0.049787 / 0.950213) = -2.948931; differences [0, 2.407606]
    lo = lambda a: math.log(math.exp(a) / (1.0 - math.exp(a)))  # noqa: E731 - by definition, not the code's form
    assert lo(-1.0) - lo(-3.0) == pytest.approx(2.407606, abs=1e-6)
    odds_loss = (math.log(2.0) + l(2.407606)) / 2  # (0.693147 + 0.086206) / 2 = 0.389677
    # NLL per token of the chosen: mean(1, 1) = 1
    assert _loss("orpo", _logps(ref=False)) == pytest.approx(1.0 + 0.1 * odds_loss, abs=1e-6)
    assert _loss("orpo", _logps(ref=False)) == pytest.approx(1.038968, abs=1e-6)


def test_orpo_log_odds_stay_finite_near_certainty() -> None:
    t = torch.tensor
    near = PairLogps(t([-1e-9, -50.0]), t([-30.0, -1e-12]), t([1.0, 5.0]), t([3.0, 1.0]))
    out = pair_loss("orpo").fn(near, HP, 1.0, None)
    assert math.isfinite(out.loss.item())


def test_the_table() -> None:
    assert set(PAIR_LOSSES) == {"sigmoid", "ipo", "cdpo", "robust", "hinge", "rpo", "simpo", "orpo"}
    assert {n for n, e in PAIR_LOSSES.items() if not e.needs_reference} == {"simpo", "orpo"}
    assert all(e.doc and "\n" not in e.doc for e in PAIR_LOSSES.values())
    with pytest.raises(UserError, match="sigmoid, ipo, cdpo"):
        pair_loss("dpo-typo")
    with pytest.raises(UserError):
        PairLossConfig(label_smoothing=0.5)


def test_reference_free_losses_need_no_reference_and_others_refuse_to_run_without() -> None:
    for name, entry in PAIR_LOSSES.items():
        if entry.needs_reference:
            with pytest.raises(ValueError, match="reference"):
                entry.fn(_logps(ref=False), HP, 1.0, None)
        else:  # the reference is ignored when given
            assert _loss(name, _logps(ref=False)) == _loss(name, _logps(ref=True))


def test_zero_smoothing_is_plain_dpo() -> None:
    hp0 = PairLossConfig(beta=0.1, label_smoothing=0.0)
    for name in ("cdpo", "robust"):
        assert _loss(name, hp=hp0) == pytest.approx(_loss("sigmoid"), abs=1e-7)
        assert _loss(name, hp=hp0, target=torch.tensor([1.0, 0.5])) == pytest.approx(
            _loss("sigmoid", target=torch.tensor([1.0, 0.5])), abs=1e-7)


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_gradients_raise_chosen_and_lower_rejected(name: str) -> None:
    """Near the start (policy = reference, h small) every loss pushes log pi(y_c) up and log pi(y_r) down."""
    pc = torch.tensor([-6.0, -9.0], requires_grad=True)
    pr = torch.tensor([-6.5, -8.0], requires_grad=True)
    ref = PAIR_LOSSES[name].needs_reference
    logps = PairLogps(pc, pr, torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0]),
                      pc.detach().clone() if ref else None, pr.detach().clone() if ref else None)
    PAIR_LOSSES[name].fn(logps, HP, 1.0, None).loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all(), (pc.grad, pr.grad)


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_target_zero_is_the_swapped_pair(name: str) -> None:
    a = _logps()
    swapped = PairLogps(a.rejected, a.chosen, a.rejected_tokens, a.chosen_tokens, a.ref_rejected, a.ref_chosen)
    assert _loss(name, a, target=0.0) == pytest.approx(_loss(name, swapped), abs=1e-6)


def test_ties_by_hand() -> None:
    tie = torch.tensor([0.5, 0.5])
    # sigmoid: the Bradley-Terry cross-entropy at mu = 1/2: (l(x) + l(-x)) / 2 per pair
    assert _loss("sigmoid", target=tie) == pytest.approx((0.644397 + 0.744397 + 0.718460 + 0.668460) / 4, abs=1e-6)
    # ipo at mu = 1/2: ((h - 5)^2 + (h + 5)^2) / 2 = h^2 + 25: (1 + 25 + 0.25 + 25) / 2
    assert _loss("ipo", target=tie) == pytest.approx(25.625, abs=1e-5)
    # hinge at mu = 1/2: (relu(1 - 0.1) + relu(1 + 0.1)) / 2 = 1 and (1.05 + 0.95) / 2 = 1
    assert _loss("hinge", target=tie) == pytest.approx(1.0, abs=1e-6)
    # simpo at mu = 1/2: no margin, d = [0, 4]: (l(0) + l(0)) / 2 = log 2 and (l(4) + l(-4)) / 2 = (0.018150 + 4.018150) / 2
    assert _loss("simpo", _logps(False), target=tie) == pytest.approx((math.log(2) + 2.018150) / 2, abs=1e-6)
    # rpo at mu = 1/2: the NLL of both responses, mean((1 + 1) / 2, (1 + 3) / 2) = 1.5
    assert _loss("rpo", target=tie) - _loss("sigmoid", target=tie) == pytest.approx(1.5, abs=1e-6)
    # accuracy counts decided pairs only
    out = pair_loss("ipo").fn(_logps(), HP, torch.tensor([1.0, 0.5]), None)
    assert out.metrics["accuracy"] == 1.0  # pair 1 (h = 1 > 0) is right; the tie is not counted


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_weights_make_a_weighted_mean_and_count(name: str) -> None:
    a = _logps()
    single = [PAIR_LOSSES[name].fn(PairLogps(*(None if x is None else x[i: i + 1] for x in (
        a.chosen, a.rejected, a.chosen_tokens, a.rejected_tokens, a.ref_chosen, a.ref_rejected))), HP, 1.0, None)
        .loss.item() for i in range(2)]
    out = PAIR_LOSSES[name].fn(a, HP, 1.0, torch.tensor([1.0, 3.0]))
    assert out.loss.item() == pytest.approx((single[0] + 3 * single[1]) / 4, abs=1e-6)
    assert out.count == pytest.approx(4.0)


def test_metrics_are_the_implicit_rewards() -> None:
    m = pair_loss("sigmoid").fn(_logps(), HP, 1.0, None).metrics
    assert m["reward_chosen"] == pytest.approx(0.1 * (0.5 - 0.5) / 2, abs=1e-7)  # beta x mean log-ratio
    assert m["reward_rejected"] == pytest.approx(0.1 * (-0.5 + 0.0) / 2, abs=1e-7)
    assert m["accuracy"] == 0.5 and m["margin"] == pytest.approx(0.1 * (1.0 - 0.5) / 2, abs=1e-7)
    s = pair_loss("simpo").fn(_logps(False), HP, 1.0, None).metrics
    assert s["reward_chosen"] == pytest.approx(-2.0) and s["reward_rejected"] == pytest.approx(-4.0)
    o = pair_loss("orpo").fn(_logps(False), HP, 1.0, None).metrics
    assert o["nll"] == pytest.approx(1.0) and o["log_odds_ratio"] == pytest.approx(2.407606 / 2, abs=1e-6)
    assert pair_loss("rpo").fn(_logps(), HP, 1.0, None).metrics["nll"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_each_loss_improves_its_objective_on_free_logits(name: str) -> None:
    """A policy of free per-position logits (8 pairs, responses of 1-4 tokens over 6 symbols),
    its own start as the reference: 50 Adam steps lower the loss and widen the reward margin."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 8, 4, 6
    ids = torch.randint(0, V, (2, B, T), generator=g)  # chosen, rejected
    lengths = torch.randint(1, T + 1, (2, B), generator=g)
    mask = (torch.arange(T) < lengths.unsqueeze(-1)).float()  # (2, B, T)
    logits = torch.nn.Parameter(torch.randn(2, B, T, V, generator=g))

    def summed() -> torch.Tensor:  # (2, B)
        lp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (2, B, T)
        return (lp * mask).sum(-1)

    ref = summed().detach()
    entry = PAIR_LOSSES[name]
    hp = PairLossConfig(beta=0.5, simpo_beta=2.0)

    def step() -> tuple[torch.Tensor, float]:
        s = summed()
        refs = (ref[0], ref[1]) if entry.needs_reference else (None, None)
        out = entry.fn(PairLogps(s[0], s[1], lengths[0].float(), lengths[1].float(), *refs), hp, 1.0, None)
        return out.loss, out.metrics["margin"]

    opt = torch.optim.Adam([logits], lr=0.05)
    loss0, margin0 = step()
    for _ in range(50):
        opt.zero_grad()
        loss, _ = step()
        loss.backward()
        opt.step()
    loss1, margin1 = step()
    assert loss1.item() < loss0.item() - 0.05, (loss0.item(), loss1.item())
    assert margin1 > margin0 + 0.1, (margin0, margin1)


def test_kto_by_hand() -> None:
    t = torch.tensor
    # z0 = max(0, mean([-2 + 2.5, -1 + 1.5])) = 0.5; r = [0.5, -0.5, 0.0]; beta 0.5, lambda_D 1, lambda_U 2
    out = kto(t([-1.0, -2.0, -3.0]), t([-1.5, -1.5, -3.0]), t([True, False, True]), t([-2.0, -1.0]),
              t([-2.5, -1.5]), beta=0.5, lambda_d=1.0, lambda_u=2.0)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    desirable_1 = 1.0 - sig(0.5 * (0.5 - 0.5))  # 0.5
    undesirable = 2.0 - 2.0 * sig(0.5 * (0.5 + 0.5))  # 2 - 2 x 0.622459 = 0.755082
    desirable_2 = 1.0 - sig(0.5 * (0.0 - 0.5))  # 1 - 0.437823 = 0.562177
    assert out.loss.item() == pytest.approx((desirable_1 + undesirable + desirable_2) / 3, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.605753, abs=1e-6)
    assert out.metrics["kl"] == pytest.approx(0.5)
    assert out.metrics["reward_desirable"] == pytest.approx(0.5 * (0.5 + 0.0) / 2)
    assert out.metrics["reward_undesirable"] == pytest.approx(0.5 * -0.5)
    assert (out.metrics["n_desirable"], out.metrics["n_undesirable"]) == (2.0, 1.0)


def test_kto_reference_point_is_clamped_detached_and_gradients_have_the_right_sign() -> None:
    t = torch.tensor
    pol = t([-1.0, -2.0], requires_grad=True)
    kl_pol = t([-3.0, -3.0], requires_grad=True)
    out = kto(pol, t([-1.0, -2.0]), t([True, False]), kl_pol, t([-2.0, -2.0]))
    assert out.metrics["kl"] == 0.0  # mean log-ratio -1 < 0: clamped
    out.loss.backward()
    assert kl_pol.grad is None or (kl_pol.grad == 0).all()  # z0 is not differentiated through
    assert pol.grad[0] < 0 and pol.grad[1] > 0  # raise the desirable, lower the undesirable
    # all desirable: 1 - sigmoid(0) each at r = z0 = 0
    only = kto(t([-1.0]), t([-1.0]), t([True]), t([-1.0]), t([-1.0]))
    assert only.loss.item() == pytest.approx(0.5) and only.metrics["reward_undesirable"] == 0.0
