"""Models: build, save/load round trip, HF models from disk, mismatches, sampling positions."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhfkit.errors import UserError
from rlhfkit.lm.data import encode_pair, pad_right, token_logprobs
from rlhfkit.lm.forward import response_forward
from rlhfkit.lm.models import load_policy, reward_model_from, save_model
from rlhfkit.lm.sampling import generate


def test_save_load_round_trip_gives_identical_logits(tiny_lm, tmp_path):
    model, tok = load_policy(tiny_lm)
    save_model(model, tok, tmp_path / "copy")
    again, tok2 = load_policy(tmp_path / "copy")
    ids = torch.tensor([tok("Write a short review of the kettle: The kettle is great.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tok2.get_vocab() == tok.get_vocab()
    assert (tmp_path / "copy" / "model.safetensors").exists()


def test_hf_gpt2_saved_with_save_pretrained_loads(tiny_lm, tmp_path):
    _, tok = load_policy(tiny_lm)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    model, tok2 = load_policy(tmp_path / "hf")
    assert model.config.n_embd == 32 and tok2.pad_token_id is not None
    rm, _ = reward_model_from(tmp_path / "hf")
    ids, att = pad_right([encode_pair(tok2, "Review the tea:", " Good.", 32)[0]], tok2.pad_token_id)
    assert rm(input_ids=ids, attention_mask=att).logits.shape == (1, 1)


def test_mismatched_tokenizer_and_model_is_a_clear_error(tiny_lm, tmp_path):
    _, tok = load_policy(tiny_lm)
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(UserError, match="tokenizer has .* tokens but the model's embedding has only 50"):
        load_policy(tmp_path / "m")


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_policy(tmp_path / "nope")


def test_left_padded_rollout_logprobs_match_unpadded(tiny_lm):
    """Positions must follow real tokens, or a left-padded prompt sees shifted positions."""
    model, tok = load_policy(tiny_lm)
    torch.manual_seed(0)
    prompts = ["Tell us about the kettle:", "Write a short review of the vacuum cleaner:"]
    ro = generate(model, tok, prompts, max_new_tokens=8)
    with torch.no_grad():
        batched = response_forward(model, ro).logp
        for i in range(2):
            real = ro.attention_mask[i].bool()
            ids = ro.ids[i][real].unsqueeze(0)
            single = token_logprobs(model, ids, torch.ones_like(ids))[0]
            n_resp = int(ro.response_mask[i].sum())
            expected = single[-n_resp:] if n_resp else single[:0]
            assert torch.allclose(batched[i][: n_resp], expected, atol=1e-4)


def test_generate_marks_response_up_to_first_eos(tiny_lm):
    model, tok = load_policy(tiny_lm)
    torch.manual_seed(1)
    ro = generate(model, tok, ["Review the tea in a few sentences:"] * 6, max_new_tokens=24)
    resp = ro.ids[:, ro.prompt_len:]
    for row, mask in zip(resp, ro.response_mask):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()  # contiguous from the left
        eos_pos = (row == tok.eos_token_id).nonzero()
        if len(eos_pos):
            assert n == int(eos_pos[0]) + 1
