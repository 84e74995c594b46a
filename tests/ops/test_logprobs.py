"""ops/logprobs.py against naive versions and hand-computed values."""

import math

import pytest
import torch

from rlhfkit.ops.logprobs import (
    entropy_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    mixture_logprobs,
    reduce,
    response_logprobs,
)


def test_response_logprobs_matches_naive_log_softmax_gather():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 4  # (B, T, V)
    ids = torch.randint(0, 11, (3, 5), generator=g)  # (B, T)
    naive = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(response_logprobs(logits, ids), naive)


def test_response_logprobs_by_hand_and_half_precision_input():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = (1/4, 3/4)
    ids = torch.tensor([[1]])
    assert response_logprobs(logits, ids).item() == pytest.approx(math.log(0.75))
    out = response_logprobs(logits.to(torch.bfloat16), ids)
    assert out.dtype == torch.float32


def test_response_logprobs_rejects_misaligned_shapes():
    with pytest.raises(AssertionError):
        response_logprobs(torch.zeros(2, 4, 5), torch.zeros(2, 3, dtype=torch.long))


def test_masked_sum_mean_var_by_hand():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_sum(x, mask).item() == pytest.approx(6.0)
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    torch.testing.assert_close(masked_sum(x, mask, dim=1), torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 3.0]))
    # values 1, 2, 3: mean 2, squared deviations sum to 2
    assert masked_var(x, mask).item() == pytest.approx(1.0)  # unbiased: 2 / (3 - 1)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(2.0 / 3.0)


def test_all_zero_mask_gives_zero_not_nan():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[0, 0], [1, 1]])
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([0.0, 3.5]))
    assert masked_sum(x, torch.zeros_like(mask)).item() == 0.0
    assert not torch.isnan(masked_var(x, torch.zeros_like(mask)))


def test_reduce_modes():
    x = torch.tensor([[2.0, 4.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert reduce(x, mask, "mean").item() == pytest.approx(3.0)
    assert reduce(x, mask, "sum").item() == pytest.approx(6.0)
    torch.testing.assert_close(reduce(x, mask, "none"), torch.tensor([[2.0, 4.0, 0.0]]))


def test_entropy_by_hand():
    uniform = torch.zeros(1, 1, 4)
    assert entropy_from_logits(uniform).item() == pytest.approx(math.log(4.0))
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = (1/4, 3/4)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_from_logits(logits).item() == pytest.approx(h)
    peaked = torch.tensor([[[0.0, 1e4]]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_from_logits(torch.zeros(2, 3, 5)).shape == (2, 3)


def test_entropy_ignores_tokens_filtered_to_minus_infinity():
    logits = torch.tensor([[[0.0, 0.0, float("-inf"), float("-inf")]]])
    assert entropy_from_logits(logits).item() == pytest.approx(math.log(2.0))


def test_mixture_logprobs_by_hand():
    # member 1: p = (0.5, 0.5); member 2: p = (0.8, 0.2) -> mean (0.65, 0.35)
    z = torch.tensor([[[0.0, 0.0]], [[math.log(0.8), math.log(0.2)]]])  # (M=2, B=1, A=2)
    out = mixture_logprobs(z)
    assert out.shape == (1, 2)
    assert out[0].exp().tolist() == pytest.approx([0.65, 0.35])
