"""Token batches from records: prompt + response sequences with their masks.

A sequence is `prompt ids + response ids + [EOS]`, tokenized in two parts so the
boundary is exactly where sampling starts; the prompt is rendered through the model's
chat template where it has one (`lm/chat.py`), and EOS is then the template's end of turn.
Sequences are right-padded; masks mark real tokens (`attention`) and response tokens
(`response`, EOS included). A demonstration's loss mask covers all of its assistant turns.
"""

from __future__ import annotations

import functools
import inspect
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.feedback.records import Comparison, Demonstration, Prompt
from rlhfkit.lm.chat import encode_conversation, render_prompts, response_text
from rlhfkit.ops.logprobs import response_logprobs
from rlhfkit.types import PreferenceBatch, SFTBatch


def _fit(p: list[int], r: list[int], max_len: int) -> tuple[list[int], int]:
    """Cut prompt ids `p` and response ids `r` (EOS included) to `max_len`: long prompts lose
    their start, long responses their end (the EOS then is dropped, as the text was cut)."""
    max_prompt = max(1, max_len // 2)
    if len(p) + len(r) > max_len and len(p) > max_prompt:
        p = p[-max(max_prompt, max_len - len(r)):]
    r = r[: max(1, max_len - len(p))]
    return p + r, len(p)


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, response: str, max_len: int
                ) -> tuple[list[int], int]:
    """-> (ids, index of the first response token)."""
    return encode_pairs(tokenizer, [prompt], [response], max_len)[0]


def encode_pairs(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], responses: Sequence[str],
                 max_len: int) -> list[tuple[list[int], int]]:
    """`encode_pair` for many pairs in two batched tokenizer calls (the Rust tokenizer runs them
    in parallel); the same ids as pair by pair."""
    if not prompts:
        return []
    ps = tokenizer(render_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"]
    rs = tokenizer([response_text(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)],
                   add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [_fit(p, r + [eos], max_len) for p, r in zip(ps, rs)]


def _fit_masked(ids: list[int], mask: list[int], start: int, max_len: int) -> tuple[list[int], list[int]]:
    """`_fit` for a conversation with its loss mask, whose final answer starts at `start`."""
    cut, p_len = _fit(ids[:start], ids[start:], max_len)
    lo = start - p_len  # the first prompt token kept
    return ids[lo: lo + len(cut)], mask[lo: lo + len(cut)]


def pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, : len(s)] = 1
    return ids, att  # (B, T), (B, T)


def _response_mask(starts: Sequence[int], att: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(att.shape[1]).unsqueeze(0)  # (1, T)
    return ((pos >= torch.tensor(starts).unsqueeze(1)) & att.bool()).long()  # (B, T)


@dataclass(frozen=True)
class EncodedPreference:
    """A comparison tokenized once, before training: both sequences and where responses start."""

    chosen: tuple[list[int], int]
    rejected: tuple[list[int], int]
    target: float
    weight: float


def response_token_counts(encoded: Sequence[tuple[list[int], int]]) -> torch.Tensor:
    """|y| of each `(ids, response start)`: how many response tokens `sequence_logprob` sums,
    (B,) float, for length-normalized losses. A response token at position 0 has no position
    before it to predict it, so it is not counted (nor scored)."""
    return torch.tensor([len(ids) - max(start, 1) for ids, start in encoded], dtype=torch.float32)


def encode_demonstrations(tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration], max_len: int
                          ) -> list[tuple[list[int], list[int]]]:
    """(ids, loss mask) per demonstration; a conversation's earlier assistant turns are trained on
    too (`lm.chat.encode_conversation`). A `MaskError` names the demonstration's index."""
    out = []
    for i, d in enumerate(demos):
        ids, mask, start = encode_conversation(tokenizer, d.prompt, d.response, index=i)
        out.append(_fit_masked(ids, mask, start, max_len))
    return out


def collate_sft(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> SFTBatch:
    ids, att = pad_right([e[0] for e in encoded], pad_id)
    mask, _ = pad_right([e[1] for e in encoded], 0)
    return SFTBatch(ids, att, mask * att)


def sft_batch(tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration], max_len: int) -> SFTBatch:
    return collate_sft(encode_demonstrations(tokenizer, demos, max_len), tokenizer.pad_token_id)


def encode_preferences(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Comparison], max_len: int
                       ) -> list[EncodedPreference]:
    prompts = [x.prompt for x in pairs]
    c = encode_pairs(tokenizer, prompts, [x.chosen for x in pairs], max_len)
    r = encode_pairs(tokenizer, prompts, [x.rejected for x in pairs], max_len)
    return [EncodedPreference(ci, ri, x.target, x.weight) for ci, ri, x in zip(c, r, pairs)]


def collate_preferences(encoded: Sequence[EncodedPreference], pad_id: int) -> PreferenceBatch:
    c_ids, c_att = pad_right([e.chosen[0] for e in encoded], pad_id)
    r_ids, r_att = pad_right([e.rejected[0] for e in encoded], pad_id)
    return PreferenceBatch(
        c_ids, c_att, _response_mask([e.chosen[1] for e in encoded], c_att),
        r_ids, r_att, _response_mask([e.rejected[1] for e in encoded], r_att),
        target=torch.tensor([e.target for e in encoded], dtype=torch.float32),
        weight=torch.tensor([e.weight for e in encoded], dtype=torch.float32),
    )


def collate_responses(encoded: Sequence[tuple[list[int], int]], pad_id: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`encode_pairs` output -> (ids, attention, response mask), (B, T) each, right-padded: one
    response per prompt, for `sequence_logprob` (KTO's unpaired feedback)."""
    ids, att = pad_right([e[0] for e in encoded], pad_id)
    return ids, att, _response_mask([e[1] for e in encoded], att)


def preference_batch(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Comparison], max_len: int
                     ) -> PreferenceBatch:
    return collate_preferences(encode_preferences(tokenizer, pairs, max_len), tokenizer.pad_token_id)


def lm_blocks(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], block: int) -> torch.Tensor:
    """Documents joined by EOS into one stream, cut into (N, block) rows for pretraining."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for enc in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(enc)
        stream.append(eos)
    n = len(stream) // block
    if n == 0:
        from rlhfkit.errors import UserError

        raise UserError(f"the corpus has {len(stream)} tokens, fewer than one block of {block}")
    return torch.tensor(stream[: n * block], dtype=torch.long).view(n, block)


def position_ids(attention: torch.Tensor) -> torch.Tensor:
    return (attention.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)


def token_logprobs(model: PreTrainedModel, ids: torch.Tensor, attention: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """log p(ids[:, t] | ids[:, :t]) for t >= 1: (B, T) -> (B, T - 1). Positions count real tokens
    only, so left-padded rows (as `generate` made them) see the positions they were sampled with."""
    logits = model(input_ids=ids, attention_mask=attention, position_ids=position_ids(attention)).logits[:, :-1]
    if temperature != 1.0:
        logits = logits / temperature
    return response_logprobs(logits, ids[:, 1:])


def keeps_logits(model: PreTrainedModel) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_takes_logits_to_keep(type(base))


@functools.cache
def _forward_takes_logits_to_keep(cls: type) -> bool:
    """Read once per model class: every forward pass asks."""
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def sequence_logprob(model: PreTrainedModel, ids: torch.Tensor, attention: torch.Tensor,
                     response_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-prob of the response tokens: log pi(y|x), (B,).

    Only positions from the earliest response token on need logits; with the prompt half of
    the sequence, skipping the rest halves the LM head, the largest matmul of a small model."""
    T = ids.shape[1]
    starts = torch.where(response_mask.bool().any(-1), response_mask.long().argmax(-1), T - 1)  # (B,)
    s0 = max(1, int(starts.min()))
    if not keeps_logits(model):
        lp = token_logprobs(model, ids, attention)  # (B, T-1)
        return (lp * response_mask[:, 1:].to(lp.dtype)).sum(-1)
    out = model(input_ids=ids, attention_mask=attention, position_ids=position_ids(attention),
                logits_to_keep=T - s0 + 1)
    lp = response_logprobs(out.logits[:, :-1], ids[:, s0:])  # (B, T - s0): predicts ids[:, s0:]
    return (lp * response_mask[:, s0:].to(lp.dtype)).sum(-1)


def minibatches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> Iterator[list[int]]:
    """Index batches for one epoch; the order depends only on (seed, epoch), so a resumed
    run can skip exactly the batches it already consumed."""
    idx = list(range(n))
    if shuffle:
        random.Random(seed * 7919 + epoch).shuffle(idx)
    for i in range(0, n, batch_size):
        yield idx[i: i + batch_size]
