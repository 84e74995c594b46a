"""A lean decoding loop for plain causal LMs: what HF `generate` does for sampling, without its
per-token machinery.

On the CPU with the tiny models rlhfkit trains, `model.generate` spends much of each token in
Python (logits-processor and stopping-criteria lists, model-kwargs bookkeeping, a host sync per
step, `torch.cat` of the attention mask and the ids). `decode` runs the same computation:
the left-padded prompts are prefilled once with their attention mask and positions
(cumsum(mask) - 1, pads at 0, as `GenerationMixin._prepare_position_ids_for_generation`),
then one token per step through the model's KV cache, and it stops once every row has emitted
EOS. Token selection follows HF 5.24's `_sample` (generation/utils.py): float32 logits;
temperature, then top-k, then top-p (the `TemperatureLogitsWarper`, `TopKLogitsWarper`,
`TopPLogitsWarper` formulas, min_tokens_to_keep=1); `torch.multinomial(softmax(scores), 1)`, or
argmax when greedy; rows that finished get the pad token. So with the same seed it draws the same
tokens as `model.generate` and leaves the RNG where `generate` leaves it (on a CPU, where the stop
test is made every step; on an accelerator it is made every `sync_every` steps, so up to
`sync_every - 1` extra steps may draw from the RNG after the last row finished, and their tokens,
all pad, are dropped).

`supports_lean` says where it applies; `lm.sampling.generate` falls back to `model.generate`
elsewhere (prefix tuning, encoder-decoders, a saved generation config with extra processors).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from typing import Any

import torch

from rlhfkit.lm.data import keeps_logits, position_ids
from rlhfkit.lm.kv_cache import cache_name

# generation-config fields that add a logits processor or change the search; the lean loop
# applies none of them, so a model whose saved generation config sets one samples through HF
_PROCESSOR_FIELDS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "min_length", "min_new_tokens", "forced_bos_token_id", "forced_eos_token_id",
    "suppress_tokens", "begin_suppress_tokens", "exponential_decay_length_penalty", "sequence_bias",
    "renormalize_logits", "remove_invalid_values", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h",
    "watermarking_config", "guidance_scale", "stop_strings", "num_beams", "num_beam_groups", "penalty_alpha",
    "dola_layers", "prefill_chunk_size", "assistant_model", "prompt_lookup_num_tokens",
)


def forward_module(model: Any) -> Any:
    """The module whose forward the loop calls: a peft model's base model (LoRA layers live inside it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@functools.cache
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def _is_prompt_learning(model: Any) -> bool:
    """A peft prefix / prompt / p-tuning model: its virtual tokens come from peft's own generate path."""
    if not hasattr(model, "peft_config"):
        return False
    return any(getattr(c, "is_prompt_learning", False) for c in model.peft_config.values())


def _extra_processors(model: Any) -> list[str]:
    from transformers import GenerationConfig

    gc, default = getattr(model, "generation_config", None), GenerationConfig()
    if gc is None:
        return []
    return [f for f in _PROCESSOR_FIELDS if getattr(gc, f, None) != getattr(default, f, None)]


def supports_lean(model: Any) -> bool:
    """Whether `decode` computes what `model.generate` would: a decoder-only LM whose forward takes
    an attention mask, positions and a KV cache, no prompt-learning adapter, no extra processors."""
    if _is_prompt_learning(model):
        return False
    base = forward_module(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if hasattr(base, "_supports_default_dynamic_cache") and not base._supports_default_dynamic_cache():
        return False
    needed = {"input_ids", "attention_mask", "position_ids", "use_cache", cache_name(model)}
    return needed <= _forward_params(type(base)) and not _extra_processors(model)


def _takes_bool_4d_mask(model: Any) -> bool:
    """SDPA attention on a transformers with `masking_utils` (>= 4.53) uses a 4D mask as given,
    True where a query may attend; older releases and other attentions build their own."""
    has_masking_utils = importlib.util.find_spec("transformers.masking_utils") is not None
    return has_masking_utils and getattr(model.config, "_attn_implementation", None) == "sdpa"


def new_cache(model: Any) -> Any:
    """An empty DynamicCache, told the model's config where it takes one (sliding-window layers)."""
    from transformers import DynamicCache

    if "config" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(config=model.config)
    return DynamicCache()


def pick_tokens(logits: torch.Tensor, greedy: bool, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """One token per row from float32 logits (B, V), as HF's `_sample` with its warpers picks it."""
    if greedy:
        return logits.argmax(dim=-1)
    scores = logits / temperature if temperature != 1.0 else logits
    if top_k:
        kth = torch.topk(scores, min(top_k, scores.shape[-1]))[0][..., -1, None]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)  # (B, V)
        drop[..., -1:] = False  # keep at least one token
        scores = scores.masked_fill(drop.scatter(1, sorted_idx, drop), float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # (B, V)
    # torch.multinomial(probs, 1) is argmax(probs / q), q ~ Exp(1) of probs' shape (aten's
    # multinomial, its one-sample path): the same draws from the same generator, without its
    # check that probs are finite and non-negative (a host sync every token on an accelerator)
    q = torch.empty_like(probs).exponential_(1)
    return (probs / q).argmax(dim=-1)  # (B,)


@torch.no_grad()
def decode(model: Any, ids: torch.Tensor, att: torch.Tensor, max_new_tokens: int, eos_token_id: int,
           pad_token_id: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
           sync_every: int | None = None) -> torch.Tensor:
    """New tokens (B, R') after left-padded prompts `ids`, `att` (B, P); R' <= max_new_tokens is the
    step at which the last row emitted EOS (or max_new_tokens). After a row's EOS come pads."""
    B, P = ids.shape
    assert att.shape == (B, P), f"attention mask {tuple(att.shape)} for ids {tuple(ids.shape)}"
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be positive when sampling, got {temperature}")
    device = ids.device
    tokens = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)  # (B, R)
    if max_new_tokens == 0:
        return tokens
    sync_every = sync_every or (1 if device.type == "cpu" else 8)
    base = forward_module(model)
    step_kwargs: dict[str, Any] = {cache_name(model): new_cache(base), "use_cache": True}
    mask = torch.ones((B, P + max_new_tokens), dtype=att.dtype, device=device)  # (B, P + R)
    mask[:, :P] = att
    pos = position_ids(att)  # (B, P)
    keep = {"logits_to_keep": 1} if keeps_logits(base) else {}  # the last position's logits only
    out = base(input_ids=ids, attention_mask=att, position_ids=pos, **step_kwargs, **keep)
    pos = pos[:, -1:] + 1  # (B, 1)
    # one query per step attends to every unpadded key: with SDPA the padding mask is the whole
    # 4D mask, so it is handed over as one (slices of one buffer), not rebuilt by the model each step
    step_mask = mask.bool()[:, None, None, :] if _takes_bool_4d_mask(base) else mask  # (B, 1, 1, P + R)
    unfinished = torch.ones(B, dtype=torch.bool, device=device)  # (B,)
    pad = torch.tensor(pad_token_id, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        if t > 0:
            out = base(input_ids=tokens[:, t - 1: t], attention_mask=step_mask[..., : P + t], position_ids=pos,
                       **step_kwargs)
            pos = pos + 1
        logits = out.logits[:, -1].float()  # (B, V)
        del out
        nxt = torch.where(unfinished, pick_tokens(logits, greedy, temperature, top_k, top_p), pad)  # (B,)
        tokens[:, t] = nxt
        unfinished &= nxt != eos_token_id
        if (t + 1) % sync_every == 0 and not bool(unfinished.any()):
            break
    # HF stops at the step where the last row finished: drop any later (all-pad) steps
    is_eos = tokens == eos_token_id  # (B, R)
    ends = torch.where(is_eos.any(1), is_eos.long().argmax(1) + 1, max_new_tokens)  # (B,)
    return tokens[:, : int(ends.max())]
