"""The last block's feed-forward computed at the scored position only: same rewards, same gradients."""

from __future__ import annotations

import pytest
import torch
from test_shared_prompt import PAIRS, _grads
from transformers import AutoConfig, AutoModelForSequenceClassification

from rlhfkit.algos.reward_model import pair_rewards
from rlhfkit.lm.data import encode_preferences
from rlhfkit.lm.models import enable_activation_checkpointing, reward_model_from
from rlhfkit.lm.scored_position import feed_forward_at, last_block_mlp, scored_index

PAD = 0
SMALL = {"vocab_size": 50, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": PAD, "num_labels": 1,
         "max_position_embeddings": 64}


def test_scored_index_is_the_rightmost_non_pad_token():
    ids = torch.tensor([[5, 6, 7, 0, 0], [0, 0, 4, 9, 0], [3, 3, 3, 3, 3]])
    assert scored_index(ids, 0).tolist() == [2, 3, 4]
    assert scored_index(ids, None).tolist() == [4, 4, 4]


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (4, 9), generator=g)
    lengths = torch.tensor([9, 5, 7, 3])
    att = (torch.arange(9) < lengths[:, None]).long()  # right padding
    return ids.masked_fill(att == 0, PAD), att


def _scores_and_grads(model, ids, att, shortcut: bool):
    model.zero_grad(set_to_none=True)
    index = scored_index(ids, PAD)
    ctx = feed_forward_at(model, index) if shortcut else torch.enable_grad()
    with ctx as on:
        r = model(input_ids=ids, attention_mask=att).logits[:, 0]  # (N,)
    if shortcut:
        assert on is True
    (r * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum().backward()
    return r.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gpt_neox", "gemma2", "phi3"])
def test_same_scores_and_gradients_on_other_architectures(arch):
    torch.manual_seed(0)
    extra = {"head_dim": 8} if arch == "gemma2" else {}
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(arch, **SMALL, **extra))
    model.eval()
    ids, att = _batch(1)
    r_full, g_full = _scores_and_grads(model, ids, att, shortcut=False)
    r_fast, g_fast = _scores_and_grads(model, ids, att, shortcut=True)
    torch.testing.assert_close(r_fast, r_full, rtol=1e-5, atol=1e-6)
    assert g_fast.keys() == g_full.keys()
    for name in g_full:
        torch.testing.assert_close(g_fast[name], g_full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_reward_model_pairs_run_the_last_mlp_on_one_row_per_sequence(tiny_lm):
    model, tok = reward_model_from(tiny_lm)
    model.eval()
    mlp = last_block_mlp(model)
    assert mlp is not None
    seen: list[tuple[int, ...]] = []
    handle = mlp.register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    enc = encode_preferences(tok, PAIRS, 64)
    rewards = pair_rewards(model, enc, tok.pad_token_id, share_prompt=True)
    handle.remove()
    d = model.config.n_embd
    assert seen == [(3, 0, d), (6, 1, d)]  # prompt pass: none; responses: the scored token
    full = model(**_padded(tok, enc)).logits[:, 0]  # no shortcut: plain HF forward of whole sequences
    torch.testing.assert_close(torch.cat(rewards), torch.cat([full[0::2], full[1::2]]), rtol=1e-4, atol=1e-5)
    def fast_loss() -> torch.Tensor:
        c, r = pair_rewards(model, enc, tok.pad_token_id)
        return (c - 2 * r).sum()

    def full_loss() -> torch.Tensor:
        logits = model(**_padded(tok, enc)).logits[:, 0]  # (2B,) chosen, rejected interleaved
        return (logits[0::2] - 2 * logits[1::2]).sum()

    g_fast, g_full = _grads(model, fast_loss), _grads(model, full_loss)
    for a, b in zip(g_fast, g_full):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def _padded(tok, enc) -> dict[str, torch.Tensor]:
    seqs = [s for e in enc for s in (e.chosen[0], e.rejected[0])]  # chosen, rejected interleaved
    T = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (T - len(s)) for s in seqs])
    att = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
    return {"input_ids": ids, "attention_mask": att}


def test_off_under_gradient_checkpointing_and_for_unknown_architectures(tiny_lm):
    model, _ = reward_model_from(tiny_lm)
    enable_activation_checkpointing(model)
    with feed_forward_at(model, torch.zeros(2, dtype=torch.long)) as on:
        assert on is False
    opt = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(
        "opt", vocab_size=50, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        word_embed_proj_dim=32, pad_token_id=PAD, num_labels=1))
    assert last_block_mlp(opt) is None


def test_gradient_checkpointing_takes_the_two_forward_path(tiny_lm):
    """Under checkpointing in training, transformers returns no key/value cache to share: the
    reward model then scores the two full sequences (the same values), instead of failing."""
    from rlhfkit.lm.shared_prompt import can_share_prompt

    model, tok = reward_model_from(tiny_lm)
    for m in model.modules():  # no dropout, so the two paths see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    enc = encode_preferences(tok, PAIRS, 64)
    plain = pair_rewards(model.eval(), enc, tok.pad_token_id, share_prompt=True)
    enable_activation_checkpointing(model)
    model.train()
    assert not can_share_prompt(model)
    rc, rr = pair_rewards(model, enc, tok.pad_token_id, share_prompt=True)
    (rc - rr).sum().backward()
    torch.testing.assert_close(torch.cat([rc, rr]).detach(), torch.cat(plain).detach(), rtol=1e-4, atol=1e-5)
    assert can_share_prompt(model.eval())  # no cache problem outside training
