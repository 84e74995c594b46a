"""Token batches from records: prompt + response sequences with their masks.

A sequence is `prompt ids + response ids + [EOS]`, tokenized in two parts so the
boundary is exactly where sampling starts. Sequences are right-padded; masks mark
real tokens (`attention`) and response tokens (`response`, EOS included).
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.feedback.records import Comparison, Demonstration
from rlhfkit.ops.logprobs import response_logprobs
from rlhfkit.types import PreferenceBatch, SFTBatch


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_len: int
                ) -> tuple[list[int], int]:
    """-> (ids, index of the first response token). Long prompts lose their start,
    long responses their end (the EOS then is dropped, as the text was cut)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    max_prompt = max(1, max_len // 2)
    if len(p) + len(r) > max_len and len(p) > max_prompt:
        p = p[-max(max_prompt, max_len - len(r)):]
    r = r[: max(1, max_len - len(p))]
    return p + r, len(p)


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


def sft_batch(tokenizer: PreTrainedTokenizerBase, demos: Sequence[Demonstration], max_len: int) -> SFTBatch:
    enc = [encode_pair(tokenizer, d.prompt, d.response, max_len) for d in demos]
    ids, att = pad_right([e[0] for e in enc], tokenizer.pad_token_id)
    return SFTBatch(ids, att, _response_mask([e[1] for e in enc], att))


def preference_batch(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Comparison], max_len: int
                     ) -> PreferenceBatch:
    c = [encode_pair(tokenizer, x.prompt, x.chosen, max_len) for x in pairs]
    r = [encode_pair(tokenizer, x.prompt, x.rejected, max_len) for x in pairs]
    c_ids, c_att = pad_right([e[0] for e in c], tokenizer.pad_token_id)
    r_ids, r_att = pad_right([e[0] for e in r], tokenizer.pad_token_id)
    return PreferenceBatch(
        c_ids, c_att, _response_mask([e[1] for e in c], c_att),
        r_ids, r_att, _response_mask([e[1] for e in r], r_att),
        target=torch.tensor([x.target for x in pairs], dtype=torch.float32),
        weight=torch.tensor([x.weight for x in pairs], dtype=torch.float32),
    )


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


def sequence_logprob(model: PreTrainedModel, ids: torch.Tensor, attention: torch.Tensor,
                     response_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-prob of the response tokens: log pi(y|x), (B,)."""
    lp = token_logprobs(model, ids, attention)  # (B, T-1)
    return (lp * response_mask[:, 1:].to(lp.dtype)).sum(-1)


def minibatches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> Iterator[list[int]]:
    """Index batches for one epoch; the order depends only on (seed, epoch), so a resumed
    run can skip exactly the batches it already consumed."""
    idx = list(range(n))
    if shuffle:
        random.Random(seed * 7919 + epoch).shuffle(idx)
    for i in range(0, n, batch_size):
        yield idx[i: i + batch_size]
