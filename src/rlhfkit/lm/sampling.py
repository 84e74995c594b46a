"""Sampling K responses per prompt from a causal LM (the lean loop of `lm.decode`, or HF `generate`).
Prompts go through the model's chat template where it has one; a response ends at EOS, which for
a chat model is the template's end-of-turn token (`lm.chat.fit_end_of_turn`), and its text is
decoded without it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.feedback.records import Completions, Prompt
from rlhfkit.lm.chat import render_prompts
from rlhfkit.lm.decode import decode, supports_lean
from rlhfkit.logging import progress
from rlhfkit.types import Rollout

ENGINES = ("auto", "lean", "hf")


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt],
             max_new_tokens: int = 48, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             greedy: bool = False, max_prompt_tokens: int = 256, engine: str = "auto") -> Rollout:
    """One sampled response per prompt. Prompts are left-padded so responses start at one index.
    The rollout's tensors live on the model's device (a GPU rollout never leaves the GPU).
    `engine`: lean (`lm.decode`), hf (`model.generate`), or auto: lean where it computes what HF
    would (`supports_lean`), else hf. Both draw the same tokens from the same seed."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    lean = engine == "lean" or (engine == "auto" and supports_lean(model))
    if engine == "lean" and not supports_lean(model):
        raise ValueError(f"the lean decoding loop does not support {type(model).__name__}: use engine='hf'")
    device = next(model.parameters()).device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    ids, att = left_padded(encode_prompts(tokenizer, prompts, max_prompt_tokens), pad)
    was_training = model.training
    model.eval()
    ids, att = ids.to(device), att.to(device)
    try:
        if lean:
            resp = decode(model, ids, att, max_new_tokens, eos, pad, temperature=temperature, top_k=top_k,
                          top_p=top_p, greedy=greedy)  # (B, R')
        else:
            resp = model.generate(
                input_ids=ids, attention_mask=att, max_new_tokens=max_new_tokens, do_sample=not greedy,
                temperature=temperature if not greedy else None, top_k=top_k if not greedy else None,
                top_p=top_p if not greedy else None, pad_token_id=pad, eos_token_id=eos,
            )[:, ids.shape[1]:]  # (B, R')
    finally:
        if was_training:
            model.train()
    return to_rollout(ids, att, resp, tokenizer, prompts)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], max_prompt_tokens: int
                   ) -> list[list[int]]:
    """Each prompt's token ids, through the model's chat template where it has one (`lm.chat`),
    keeping its last `max_prompt_tokens` (the end is what the reply follows)."""
    rendered = tokenizer(render_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"]
    return [ids[-max_prompt_tokens:] for ids in rendered]


def left_padded(enc: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as one left-padded batch and its attention mask, both (B, P)."""
    P = max(len(e) for e in enc)
    ids = torch.full((len(enc), P), pad, dtype=torch.long)
    att = torch.zeros((len(enc), P), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, P - len(e):] = torch.tensor(list(e), dtype=torch.long)
        att[i, P - len(e):] = 1
    return ids, att


def to_rollout(ids: torch.Tensor, att: torch.Tensor, resp: torch.Tensor, tokenizer: PreTrainedTokenizerBase,
               prompts: Sequence[str]) -> Rollout:
    """A Rollout from left-padded prompts (B, P) and the sampled tokens (B, R'), whatever sampled them."""
    device, pad = ids.device, tokenizer.pad_token_id
    if resp.shape[1] == 0:
        resp = torch.full((len(ids), 1), tokenizer.eos_token_id, dtype=torch.long, device=device)
    is_eos = resp == tokenizer.eos_token_id
    # response tokens: up to and including the first EOS
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    response_mask = (~after_eos).long()  # (B, R')
    resp = torch.where(response_mask.bool(), resp, torch.full_like(resp, pad))
    full = torch.cat([ids, resp], dim=1)
    full_att = torch.cat([att, response_mask], dim=1)
    texts = [tokenizer.decode(r[m.bool() & (r != tokenizer.eos_token_id)].tolist(), skip_special_tokens=True)
             for r, m in zip(resp, response_mask)]
    return Rollout(full, full_att, response_mask, ids.shape[1], tuple(prompts), tuple(texts))


def sample_completions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                       k: int, batch_size: int = 64, policy_name: str | None = None, desc: str = "sampling",
                       **gen_kwargs: object) -> list[Completions]:
    """K responses for every prompt, batched, with a progress bar."""
    flat = [p for p in prompts for _ in range(k)]
    texts: list[str] = []
    for i in progress(range(0, len(flat), batch_size), desc=desc):
        texts.extend(generate(model, tokenizer, flat[i: i + batch_size], **gen_kwargs).responses)  # type: ignore[arg-type]
    return [Completions(p, tuple(texts[j * k:(j + 1) * k]), policy=policy_name) for j, p in enumerate(prompts)]
