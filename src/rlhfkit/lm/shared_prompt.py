"""A comparison's two sequences with their common prompt computed once.

The reward model and DPO score (x, y_c) and (x, y_r). Under causal attention the prompt's
hidden states do not depend on what follows, so the prompt is run once, its key/value cache
is repeated for the two responses, and only the responses are run again:

    cache = forward(x)                            B rows, P tokens
    out   = forward([y_c; y_r] | cache repeated)  2B rows (chosen, rejected interleaved), R tokens

Gradients flow back through the cache into the prompt's computation from both branches, so
the loss and its gradient are those of two separate forwards (up to float rounding); the
model sees P + 2R tokens per pair instead of 2(P + R). Prompts are left-padded and responses
right-padded, with explicit position ids, as in generation. Works for any transformers model
whose forward takes a key/value cache (causal LMs and their sequence-classification heads).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rlhfkit.lm.data import EncodedPreference, keeps_logits
from rlhfkit.lm.kv_cache import cache_name, output_cache
from rlhfkit.lm.scored_position import checkpointing, feed_forward_at, scored_index


@dataclass(frozen=True)
class SharedPromptBatch:
    prompt_ids: torch.Tensor  # (B, P), left-padded
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (2B, R), right-padded; rows 2i, 2i+1 = chosen, rejected of pair i
    response_mask: torch.Tensor  # (2B, R)


def can_share_prompt(model: Any) -> bool:
    """The shared path hands the prompt's key/value cache to the second forward. Not with a
    prefix (peft fills that cache itself), nor under gradient checkpointing while training
    (transformers then returns no cache): those models take two full forwards."""
    from rlhfkit.lm.models import is_prefix_tuned

    return not is_prefix_tuned(model) and not (model.training and checkpointing(model))


def collate_shared(encoded: Sequence[EncodedPreference], pad_id: int) -> SharedPromptBatch | None:
    """The batch, or None when some pair's two sequences do not start with the same prompt ids
    (truncation can cut a long prompt differently for responses of different lengths)."""
    prompts, responses = [], []
    for e in encoded:
        (c, cs), (r, rs) = e.chosen, e.rejected
        if cs == 0 or c[:cs] != r[:rs]:
            return None
        prompts.append(c[:cs])
        responses += [c[cs:], r[rs:]]
    P, R = max(map(len, prompts)), max(map(len, responses))
    p_ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    p_mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        p_ids[i, P - len(p):] = torch.tensor(p)
        p_mask[i, P - len(p):] = 1
    r_ids = torch.full((len(responses), R), pad_id, dtype=torch.long)
    r_mask = torch.zeros((len(responses), R), dtype=torch.long)
    for i, y in enumerate(responses):
        r_ids[i, : len(y)] = torch.tensor(y)
        r_mask[i, : len(y)] = 1
    return SharedPromptBatch(p_ids, p_mask, r_ids, r_mask)


def shared_forward(model: Any, b: SharedPromptBatch, prompt_kwargs: dict | None = None,
                   response_kwargs: dict | None = None, scalar_head: bool = False) -> tuple[Any, Any]:
    """(prompt output, response output) of the two forwards described above. `scalar_head`:
    only the responses' scored positions are read, so the last block's feed-forward runs there
    only, and not at all in the prompt pass (`lm.scored_position`)."""
    p_len = b.prompt_mask.sum(-1)  # (B,)
    p_pos = (b.prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    with feed_forward_at(model, None) if scalar_head else nullcontext():
        out_p = model(input_ids=b.prompt_ids, attention_mask=b.prompt_mask, position_ids=p_pos, use_cache=True,
                      **(prompt_kwargs or {}))
    cache = output_cache(out_p)
    if isinstance(cache, tuple):  # older transformers: ((key, value) per layer)
        cache = tuple(tuple(t.repeat_interleave(2, dim=0) for t in layer) for layer in cache)
    else:
        cache.batch_repeat_interleave(2)
    R = b.response_ids.shape[1]
    r_pos = p_len.repeat_interleave(2).unsqueeze(1) + torch.arange(R, device=p_len.device)  # (2B, R)
    mask = torch.cat([b.prompt_mask.repeat_interleave(2, dim=0), b.response_mask], dim=1)  # (2B, P + R)
    scored = scored_index(b.response_ids, model.config.pad_token_id) if scalar_head else None
    with feed_forward_at(model, scored) if scalar_head else nullcontext():
        out_r = model(input_ids=b.response_ids, attention_mask=mask, position_ids=r_pos, use_cache=True,
                      **{cache_name(model): cache}, **(response_kwargs or {}))
    return out_p, out_r


def shared_rewards(model: Any, b: SharedPromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x, y_c), r(x, y_r), (B,) each, from a scalar-head model (read at the last response token)."""
    _, out = shared_forward(model, b, scalar_head=True)
    r = out.logits[:, 0]  # (2B,)
    return r[0::2], r[1::2]


def shared_logprobs(model: Any, b: SharedPromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_c|x), log pi(y_r|x), (B,) each. The first response token is predicted by the
    prompt's last position (left padding puts it last for every row); the rest by the responses'."""
    from rlhfkit.ops.logprobs import response_logprobs

    out_p, out_r = shared_forward(model, b, prompt_kwargs={"logits_to_keep": 1} if keeps_logits(model) else None)
    first = out_p.logits[:, -1:].repeat_interleave(2, dim=0)  # (2B, 1, V)
    logits = torch.cat([first, out_r.logits[:, :-1]], dim=1)  # (2B, R, V): predicts response_ids
    lp = response_logprobs(logits, b.response_ids)  # (2B, R)
    seq = (lp * b.response_mask.to(lp.dtype)).sum(-1)  # (2B,)
    return seq[0::2], seq[1::2]
