"""ops/policy_gradient.py against hand-computed values, and a tiny policy that learns with each loss type."""

import math

import pytest
import torch

from rlhfkit.ops.policy_gradient import (
    LOSS_TYPES,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    leave_one_out_baseline,
)

EPS = 1e-4  # group_advantages' default


# ---------------------------------------------------------------- advantages


def test_group_advantages_each_scale_by_hand():
    # two prompts x 3 samples; the second group's rewards are all equal
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    # group 1: mean 2, centered [-1, 0, 1]; unbiased std = sqrt((1 + 0 + 1) / 2) = 1
    torch.testing.assert_close(group_advantages(r, 3, "group"),
                               torch.tensor([-1 / (1 + EPS), 0.0, 1 / (1 + EPS), 0.0, 0.0, 0.0]))
    # batch: mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 3 * 2.25 = 15.5, unbiased var 15.5 / 5 = 3.1
    s = math.sqrt(3.1) + EPS
    torch.testing.assert_close(group_advantages(r, 3, "batch"),
                               torch.tensor([-1 / s, 0.0, 1 / s, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(group_advantages(r, 3, "none"), torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    assert group_advantages(r, 3).equal(group_advantages(r, 3, "group"))  # GRPO's is the default


def test_group_advantages_groups_of_two():
    # groups [0, 2] (mean 1, unbiased std sqrt(2)) and [1, 1] (constant)
    r = torch.tensor([0.0, 2.0, 1.0, 1.0])
    a = 1 / (math.sqrt(2) + EPS)
    torch.testing.assert_close(group_advantages(r, 2, "group"), torch.tensor([-a, a, 0.0, 0.0]))
    # the biased std would be 1 and give +-1/(1 + eps): we use the unbiased one
    assert group_advantages(r, 2, "group")[1].item() < 0.75


def test_group_advantages_constant_group_is_exactly_zero():
    # 0.1 is not exact in binary: the group mean can differ from 0.1 by rounding, and that
    # difference divided by eps alone would not be 0
    r = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7])
    for scale in ("group", "batch", "none"):
        assert group_advantages(r, 3, scale).abs().max().item() == 0.0  # type: ignore[arg-type]


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="median"):
        group_advantages(torch.zeros(4), 2, "median")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        group_advantages(torch.zeros(5), 2)


def test_leave_one_out_baseline_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    # group 1 sums to 6: baselines (6 - r_i) / 2 = [2.5, 2, 1.5] -> advantages [-1.5, 0, 1.5]
    # group 2: every baseline is 5 -> 0
    expected = torch.tensor([-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])
    torch.testing.assert_close(leave_one_out_baseline(r, 3), expected)
    # = k/(k-1) (r - group mean)
    torch.testing.assert_close(leave_one_out_baseline(r, 3), 1.5 * group_advantages(r, 3, "none"))
    # k = 2: each sample's baseline is the other one
    torch.testing.assert_close(leave_one_out_baseline(torch.tensor([0.0, 2.0]), 2), torch.tensor([-2.0, 2.0]))


# ---------------------------------------------------------------- loss reductions

BIG = 1000.0  # at masked positions: must never reach the loss

# row 0: active [1, 2, 3] (sum 6, length 3); row 1: active [10] (sum 10, length 1)
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, BIG], [10.0, BIG, BIG, BIG]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


def test_loss_types_differ_by_hand():
    # grpo: sequence means 6/3 = 2 and 10/1 = 10, their mean 6
    assert LOSS_TYPES["grpo"](PER_TOKEN, MASK).item() == pytest.approx(6.0)
    # dr_grpo: (6 + 10) / (B * max_len) = 16 / (2 * 5)
    assert LOSS_TYPES["dr_grpo"](PER_TOKEN, MASK, max_len=5).item() == pytest.approx(1.6)
    # bnpo: 16 / 4 active tokens
    assert LOSS_TYPES["bnpo"](PER_TOKEN, MASK).item() == pytest.approx(4.0)
    # dapo: 16 / the global batch's 8 active tokens; alone it is bnpo
    assert LOSS_TYPES["dapo"](PER_TOKEN, MASK, num_tokens=8).item() == pytest.approx(2.0)
    assert LOSS_TYPES["dapo"](PER_TOKEN, MASK).item() == pytest.approx(4.0)
    assert LOSS_TYPES["dapo"](PER_TOKEN, MASK, num_tokens=torch.tensor(8)).item() == pytest.approx(2.0)


def test_loss_types_with_a_masked_truncated_row():
    # a third completion, truncated: the caller zeroed its mask row
    per_token = torch.cat([PER_TOKEN, torch.full((1, 4), BIG)])
    mask = torch.cat([MASK, torch.zeros(1, 4, dtype=MASK.dtype)])
    assert LOSS_TYPES["grpo"](per_token, mask).item() == pytest.approx(6.0)  # absent, not a zero
    assert LOSS_TYPES["dr_grpo"](per_token, mask, max_len=5).item() == pytest.approx(16 / 15)  # B = 3: constant
    assert LOSS_TYPES["bnpo"](per_token, mask).item() == pytest.approx(4.0)
    assert LOSS_TYPES["dapo"](per_token, mask).item() == pytest.approx(4.0)


def test_reductions_refuse_an_undefined_denominator():
    with pytest.raises(ValueError, match="max_len"):
        LOSS_TYPES["dr_grpo"](PER_TOKEN, MASK)
    with pytest.raises(ValueError, match="num_tokens"):
        LOSS_TYPES["dapo"](PER_TOKEN, MASK, num_tokens=0)


# ---------------------------------------------------------------- the clipped surrogate


def _clip_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sequences with ratios [1.5, 0.5, 1.1] each, advantages +1 and -1."""
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.2, -3.0]])
    logp = (old + ratios.log()).requires_grad_(True)
    return logp, old, torch.tensor([1.0, -1.0])


def test_clipping_low_and_high_by_hand():
    logp, old, adv = _clip_case()
    out = grpo_loss(logp, old, adv, torch.ones(2, 3), loss_type="bnpo", eps_low=0.2, eps_high=0.28)
    # band [0.8, 1.28]. A = +1: loss_t = -min(rho, clip(rho)):
    #   1.5 -> -1.28 (clipped: grad 0), 0.5 -> -0.5 (grad -rho = -0.5), 1.1 -> -1.1 (grad -1.1)
    # A = -1: loss_t = max(rho, clip(rho)):
    #   1.5 -> 1.5 (grad +1.5), 0.5 -> 0.8 (clipped: grad 0), 1.1 -> 1.1 (grad 1.1)
    # d loss_t / d logp_t = d loss_t / d rho * rho; bnpo divides by 6 tokens
    assert out.loss.item() == pytest.approx((-1.28 - 0.5 - 1.1 + 1.5 + 0.8 + 1.1) / 6)
    out.loss.backward()
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5, -1.1], [1.5, 0.0, 1.1]]) / 6)
    # one token of six binds at each bound
    assert out.metrics["clipfrac_low"] == pytest.approx(1 / 6)
    assert out.metrics["clipfrac_high"] == pytest.approx(1 / 6)
    assert out.metrics["clipfrac"] == pytest.approx(2 / 6)
    assert out.metrics["ratio_mean"] == pytest.approx(3.1 / 3)
    assert out.metrics["ratio_max"] == pytest.approx(1.5)
    assert out.metrics["loss"] == pytest.approx(out.loss.item())
    assert "kl" not in out.metrics


def test_clip_higher_keeps_the_gradient_that_a_symmetric_clip_removes():
    # rho = 1.25 with A = +1: outside [0.8, 1.2], inside [0.8, 1.28]
    ratio = torch.tensor([[1.25]], requires_grad=True)
    clipped_surrogate(ratio, torch.tensor([[1.0]]), 0.2, 0.2).sum().backward()
    assert ratio.grad is not None and ratio.grad.item() == 0.0
    ratio.grad = None
    clipped_surrogate(ratio, torch.tensor([[1.0]]), 0.2, 0.28).sum().backward()
    assert ratio.grad is not None and ratio.grad.item() == pytest.approx(-1.0)


def test_per_token_advantages_and_masking():
    logp, old, _ = _clip_case()
    adv_bt = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    out = grpo_loss(logp, old, adv_bt, mask, loss_type="grpo", eps_low=0.2, eps_high=0.28)
    # row 0: (-1.28 - 0.5 - 1.1) / 3 = -0.96; row 1: only the first token, 1.5; mean 0.27
    assert out.loss.item() == pytest.approx(0.27)
    out.loss.backward()
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5 / 6, -1.1 / 6], [1.5 / 2, 0.0, 0.0]]))


# ---------------------------------------------------------------- the KL term


def _kl_case() -> tuple[torch.Tensor, torch.Tensor]:
    """pi = [0.5, 0.2] and pi_ref = [0.25, 0.4] on two sampled tokens, A = 0 so only the KL acts."""
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.25), math.log(0.4)]])
    return logp, ref


def test_k3_kl_term_value_and_gradient():
    logp, ref = _kl_case()
    out = grpo_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), loss_type="bnpo", eps_low=0.2,
                    eps_high=0.2, beta=0.1, ref_logp=ref, kl_estimator="k3")
    # k3 = pi_ref/pi - 1 - log(pi_ref/pi): 0.5 - 1 + ln 2 and 2 - 1 - ln 2, summing to 0.5
    # loss = 0.1 * 0.5 / 2 tokens
    assert out.loss.item() == pytest.approx(0.025)
    assert out.metrics["kl"] == pytest.approx(0.25)
    out.loss.backward()
    # d k3 / d logp = 1 - pi_ref/pi = [0.5, -1]; times beta / 2
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.025, -0.05]]))


def test_bias_corrected_kl_term_value_and_gradient():
    logp, ref = _kl_case()
    on = grpo_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), loss_type="bnpo", eps_low=0.2,
                   eps_high=0.2, beta=0.1, ref_logp=ref, kl_estimator="k3_is")
    assert on.loss.item() == pytest.approx(0.025)  # on-policy the ratio is 1 in value
    on.loss.backward()
    # d (rho k3) / d logp = rho (logp - ref_logp) = [ln 2, -ln 2]; times beta / 2
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.05 * math.log(2), -0.05 * math.log(2)]]))
    # off-policy: pi_old = [0.25, 0.4], ratios [2, 0.5]: value 0.1 * (2 k3_0 + 0.5 k3_1) / 2
    logp.grad = None
    old = torch.tensor([[math.log(0.25), math.log(0.4)]])
    off = grpo_loss(logp, old, torch.zeros(1), torch.ones(1, 2), loss_type="bnpo", eps_low=0.2, eps_high=0.2,
                    beta=0.1, ref_logp=ref, kl_estimator="k3_is")
    k3 = [0.5 - 1 + math.log(2), 2 - 1 - math.log(2)]
    assert off.loss.item() == pytest.approx(0.05 * (2 * k3[0] + 0.5 * k3[1]))
    off.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.05 * 2 * math.log(2), -0.05 * 0.5 * math.log(2)]]))


def test_kl_given_by_the_caller():
    logp, _ = _kl_case()
    kl = (2.0 * logp).exp()  # any differentiable per-token tensor: pi^2 = [0.25, 0.04]
    out = grpo_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 2), loss_type="dr_grpo", eps_low=0.2,
                    eps_high=0.2, beta=0.5, kl=kl, max_len=4)
    # 0.5 * (0.25 + 0.04) / (1 * 4)
    assert out.loss.item() == pytest.approx(0.5 * 0.29 / 4)
    out.loss.backward()
    # d pi^2 / d logp = 2 pi^2 = [0.5, 0.08]; times 0.5 / 4
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0625, 0.01]]))


def test_kl_term_needs_exactly_one_source():
    logp, ref = _kl_case()
    args = (logp, logp.detach(), torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(ValueError, match="exactly one"):
        grpo_loss(*args, loss_type="bnpo", eps_low=0.2, eps_high=0.2, beta=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        grpo_loss(*args, loss_type="bnpo", eps_low=0.2, eps_high=0.2, beta=0.1, ref_logp=ref, kl=ref)
    with pytest.raises(ValueError, match="k9"):
        grpo_loss(*args, loss_type="bnpo", eps_low=0.2, eps_high=0.2, beta=0.1, ref_logp=ref,
                  kl_estimator="k9")  # type: ignore[arg-type]
    # beta = 0: no KL, no reference needed
    assert "kl" not in grpo_loss(*args, loss_type="bnpo", eps_low=0.2, eps_high=0.2).metrics


def test_all_zero_mask_raises_and_unknown_loss_type():
    logp, old, adv = _clip_case()
    for loss_type in LOSS_TYPES:
        with pytest.raises(ValueError, match="all zeros"):
            grpo_loss(logp, old, adv, torch.zeros(2, 3), loss_type=loss_type, eps_low=0.2,  # type: ignore[arg-type]
                      eps_high=0.2, max_len=3)
    with pytest.raises(ValueError, match="ppo"):
        grpo_loss(logp, old, adv, torch.ones(2, 3), loss_type="ppo", eps_low=0.2, eps_high=0.2)  # type: ignore[arg-type]


# ---------------------------------------------------------------- it learns


@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
def test_each_loss_type_learns_a_categorical_policy(loss_type: str):
    """A 5-token categorical policy, sequences of 3 i.i.d. tokens, reward = count of token 2.
    8 groups x 4 samples, 30 Adam steps: E[reward] = 3 p(2) rises from 0.6."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    logits = torch.zeros(5, requires_grad=True)
    ref = torch.log_softmax(logits.detach(), -1)
    opt = torch.optim.Adam([logits], lr=0.05)
    groups, g, length = 8, 4, 3
    scale = "none" if loss_type == "dr_grpo" else "group"  # as each method's paper pairs them
    for _ in range(30):
        with torch.no_grad():
            probs = torch.softmax(logits, -1)
            seqs = torch.multinomial(probs, groups * g * length, replacement=True, generator=gen)
            seqs = seqs.view(groups * g, length)  # (B, T)
            old_logp = torch.log_softmax(logits, -1)[seqs]  # (B, T)
        adv = group_advantages((seqs == 2).sum(1).float(), g, scale)  # type: ignore[arg-type]
        for _ in range(2):  # two updates per batch, so the ratio leaves 1 and the clip can act
            logp = torch.log_softmax(logits, -1)[seqs]  # (B, T)
            out = grpo_loss(logp, old_logp, adv, torch.ones_like(logp), loss_type=loss_type,  # type: ignore[arg-type]
                            eps_low=0.2, eps_high=0.28, beta=0.01, ref_logp=ref[seqs], kl_estimator="k3_is",
                            max_len=length)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    expected_reward = 3 * torch.softmax(logits.detach(), -1)[2].item()
    assert expected_reward > 2.0, f"{loss_type}: E[reward] {expected_reward:.3f}, started at 0.6"
