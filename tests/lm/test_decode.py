"""The lean decoding loop draws what HF `generate` draws: token for token, greedy and sampled."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rlhfkit.lm.decode import decode, supports_lean
from rlhfkit.lm.models import (
    LoRAConfig,
    PrefixConfig,
    load_policy,
    with_lora,
    with_prefix,
)
from rlhfkit.lm.sampling import generate

V, EOS, PAD = 61, 0, 1


def _tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=EOS,
                         eos_token_id=EOS, pad_token_id=PAD)
        return GPT2LMHeadModel(cfg).eval()
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, bos_token_id=EOS, eos_token_id=EOS,
                      pad_token_id=PAD)
    return LlamaForCausalLM(cfg).eval()


def _prompts(lengths: tuple[int, ...] = (7, 2, 5, 1, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random prompts of different lengths, (B, P) ids and mask."""
    g = torch.Generator().manual_seed(1)
    P = max(lengths)
    att = (torch.arange(P)[None] >= P - torch.tensor(lengths)[:, None]).long()  # (B, P)
    ids = torch.randint(2, V, (len(lengths), P), generator=g).masked_fill(att == 0, PAD)
    return ids, att


def _hf(model, ids, att, n: int, greedy: bool = False, **kw) -> torch.Tensor:
    sampling = {} if greedy else {"temperature": 1.0, "top_k": 0, "top_p": 1.0, **kw}
    out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=n, do_sample=not greedy,
                         pad_token_id=PAD, eos_token_id=EOS, **sampling)
    return out[:, ids.shape[1]:]


class _ForceEos:
    """A hook on the LM head: from forward `call` on, rows in `rows` get EOS (or never get it)."""

    def __init__(self, model, schedule: dict[int, list[int]], never: bool = False):
        self.calls, self.schedule, self.never = 0, schedule, never
        self.handle = model.lm_head.register_forward_hook(self)

    def __call__(self, module, args, out):
        out = out.clone()
        if self.never:
            out[..., EOS] = float("-inf")
        for call, rows in self.schedule.items():
            if self.calls >= call:
                out[rows, :, EOS] = 1e4
        self.calls += 1
        return out


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_greedy_equals_hf_generate(kind):
    model = _tiny(kind)
    assert supports_lean(model)
    ids, att = _prompts()
    torch.testing.assert_close(decode(model, ids, att, 12, EOS, PAD, greedy=True), _hf(model, ids, att, 12, True),
                               rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("kw", [{"temperature": 0.7}, {"temperature": 1.3, "top_k": 8},
                                {"temperature": 0.9, "top_p": 0.8}, {"top_k": 5, "top_p": 0.9}])
def test_sampling_equals_hf_generate_under_one_seed(kind, kw):
    """Same warpers in the same order, and the same draws from the RNG: the same tokens, and the
    RNG left in the same state (the next draw agrees)."""
    model, (ids, att) = _tiny(kind), _prompts()
    torch.manual_seed(5)
    ours, ours_next = decode(model, ids, att, 16, EOS, PAD, **kw), torch.rand(3)
    torch.manual_seed(5)
    theirs, theirs_next = _hf(model, ids, att, 16, **kw), torch.rand(3)
    assert torch.equal(ours, theirs) and torch.equal(ours_next, theirs_next)


@pytest.mark.parametrize("sync_every", [1, 3])
def test_stops_once_every_row_has_emitted_eos(sync_every):
    model, (ids, att) = _tiny("gpt2"), _prompts()
    hook = _ForceEos(model, {1: [0], 3: list(range(len(ids)))})  # row 0 ends at token 1, all by token 3
    out = decode(model, ids, att, 20, EOS, PAD, temperature=1.0, sync_every=sync_every)
    assert out.shape == (len(ids), 4)  # sampled only as far as the longest response
    # prefill + 3 steps; checked every 3 steps, it learns that all rows ended after step 5
    assert hook.calls == (4 if sync_every == 1 else 6)
    assert out[0, 1] == EOS and (out[0, 2:] == PAD).all()  # a finished row gets pads, as in HF
    assert (out[:, 3] == EOS).logical_or(out[:, 3] == PAD).all()
    hook.calls = 0
    torch.manual_seed(2)
    ours = decode(model, ids, att, 20, EOS, PAD, sync_every=sync_every)
    hook.calls = 0
    torch.manual_seed(2)
    assert torch.equal(ours, _hf(model, ids, att, 20))


def test_max_new_tokens_is_respected():
    model, (ids, att) = _tiny("llama"), _prompts()
    hook = _ForceEos(model, {}, never=True)
    out = decode(model, ids, att, 9, EOS, PAD, temperature=1.0)
    assert out.shape == (len(ids), 9) and hook.calls == 9 and not (out == EOS).any()
    assert decode(model, ids, att, 0, EOS, PAD).shape == (len(ids), 0)


def test_generate_engines_agree_and_prefix_models_take_hf(tiny_lm):
    model, tok = load_policy(tiny_lm)
    prompts = ["Write a short review of the kettle:", "Review the tea:", "Tell us about the lamp, please:"]
    torch.manual_seed(0)
    lean = generate(model, tok, prompts, max_new_tokens=10, temperature=0.8, engine="lean")
    torch.manual_seed(0)
    hf = generate(model, tok, prompts, max_new_tokens=10, temperature=0.8, engine="hf")
    assert torch.equal(lean.ids, hf.ids) and lean.responses == hf.responses
    assert torch.equal(lean.response_mask, hf.response_mask)
    lora = with_lora(load_policy(tiny_lm)[0], LoRAConfig(enabled=True, r=2))
    assert supports_lean(lora)
    prefix = with_prefix(load_policy(tiny_lm)[0], PrefixConfig(enabled=True, num_virtual_tokens=2))
    assert not supports_lean(prefix)
    with pytest.raises(ValueError, match="engine='hf'"):
        generate(prefix, tok, prompts, max_new_tokens=4, engine="lean")
    assert len(generate(prefix, tok, prompts, max_new_tokens=4).responses) == 3  # auto: HF's path
