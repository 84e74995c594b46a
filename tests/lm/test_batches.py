"""Batches built once and reused: batched tokenization and the response-only LM head."""

from __future__ import annotations

import torch

from rlhfkit.feedback.records import Comparison
from rlhfkit.lm.data import (
    encode_pair,
    encode_pairs,
    pad_right,
    preference_batch,
    sequence_logprob,
    token_logprobs,
)
from rlhfkit.lm.models import load_policy


def test_batched_encoding_equals_pair_by_pair(tiny_lm):
    _, tok = load_policy(tiny_lm)
    prompts = ["Write a short review of the kettle:", "Review the tea:", ""]
    responses = [" It boils fast and the handle stays cool. " * 3, " Good.", " Fine."]
    for max_len in (8, 24, 96):
        assert encode_pairs(tok, prompts, responses, max_len) == [
            encode_pair(tok, p, r, max_len) for p, r in zip(prompts, responses)]


def test_sequence_logprob_matches_full_logits(tiny_lm):
    """Keeping logits only from the earliest response token on gives the same log pi(y|x) as
    computing them everywhere and masking."""
    model, tok = load_policy(tiny_lm)
    model.eval()
    pairs = [Comparison("Write a short review of the kettle:", " Great kettle.", " Bad."),
             Comparison("Review the tea and say why, in detail:", " The tea is fresh and sweet.", " Meh tea.")]
    b = preference_batch(tok, pairs, 64)
    with torch.no_grad():
        fast = sequence_logprob(model, b.chosen_ids, b.chosen_attention, b.chosen_response_mask)  # (2,)
        lp = token_logprobs(model, b.chosen_ids, b.chosen_attention)  # (2, T-1)
        full = (lp * b.chosen_response_mask[:, 1:]).sum(-1)
    assert fast.shape == (2,) and torch.all(fast < 0)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    # Different prompt lengths: the row with the later response start is cut at the earlier one.
    starts = b.chosen_response_mask.argmax(-1)
    assert starts[0] != starts[1]


def test_pad_right_masks_padding(tiny_lm):
    ids, att = pad_right([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and att.tolist() == [[1, 1, 1], [1, 0, 0]]
