"""The prompt run once for both responses gives the two-forward values and gradients."""

from __future__ import annotations

import torch

from rlhfkit.algos.dpo import pair_sequence_logprobs
from rlhfkit.algos.reward_model import pair_rewards
from rlhfkit.feedback.records import Comparison
from rlhfkit.lm.data import encode_preferences
from rlhfkit.lm.models import load_policy, reward_model_from
from rlhfkit.lm.shared_prompt import collate_shared

PAIRS = [Comparison("Write a short review of the kettle:", " Great kettle, boils fast.", " Bad."),
         Comparison("Review the tea and say why, in a few sentences:", " Fresh.", " The tea is stale and flat."),
         Comparison("Tell us about the lamp:", " Bright and sturdy.", " It broke on day two, sadly.")]


def _grads(model, fn) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    fn().backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


def test_collate_puts_prompts_left_and_responses_right(tiny_lm):
    _, tok = load_policy(tiny_lm)
    enc = encode_preferences(tok, PAIRS, 64)
    b = collate_shared(enc, tok.pad_token_id)
    assert b.prompt_ids.shape[0] == 3 and b.response_ids.shape[0] == 6
    assert b.prompt_mask[:, -1].all() and b.response_mask[:, 0].all()  # left / right padding
    assert b.response_mask.sum().item() == sum(len(e.chosen[0]) - e.chosen[1] + len(e.rejected[0]) - e.rejected[1]
                                               for e in enc)


def test_rewards_and_gradients_match_two_full_forwards(tiny_lm):
    model, tok = reward_model_from(tiny_lm)
    model.eval()  # no dropout: the two ways must see the same function
    enc = encode_preferences(tok, PAIRS, 64)
    pad = tok.pad_token_id
    shared, full = pair_rewards(model, enc, pad, True), pair_rewards(model, enc, pad, False)
    for a, b in zip(shared, full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    g_shared = _grads(model, lambda: (lambda c, r: (c - 2 * r).sum())(*pair_rewards(model, enc, pad, True)))
    g_full = _grads(model, lambda: (lambda c, r: (c - 2 * r).sum())(*pair_rewards(model, enc, pad, False)))
    assert any(g.abs().sum() > 0 for g in g_shared)
    for a, b in zip(g_shared, g_full):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_logprobs_match_and_truncated_prompts_fall_back(tiny_lm):
    model, tok = load_policy(tiny_lm)
    model.eval()
    enc = encode_preferences(tok, PAIRS, 64)
    pad = tok.pad_token_id
    for a, b in zip(pair_sequence_logprobs(model, enc, pad, True), pair_sequence_logprobs(model, enc, pad, False)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # A max_len that cuts the prompt differently for a long and a short response: no shared batch.
    long = [Comparison("Review the tea: " + "it is warm and good " * 6, " ok", " a much longer answer " * 4)]
    cut = encode_preferences(tok, long, 24)
    assert cut[0].chosen[0][: cut[0].chosen[1]] != cut[0].rejected[0][: cut[0].rejected[1]]
    assert collate_shared(cut, pad) is None
    c, r = pair_sequence_logprobs(model, cut, pad, True)
    assert c.shape == r.shape == (1,) and torch.isfinite(c).all()
