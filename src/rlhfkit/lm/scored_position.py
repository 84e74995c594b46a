"""The reward model reads one position per sequence: its last block's feed-forward runs there only.

A scalar-head model (`AutoModelForSequenceClassification`) scores a sequence at its last
non-pad token. In the last decoder block, every position's attention still needs the keys
and values of the positions before it, but the feed-forward sublayer (two thirds of a GPT
block's weight FLOPs) feeds nothing but the final norm and the head, position by position.
So only the scored position's feed-forward output is ever read:

    h_L[t] = a_L[t] + MLP(norm(a_L[t]))        needed at t = scored position only

`feed_forward_at(model, index)` computes the last block's MLP on the gathered rows
(N, 1, d) and lets the block's residual add broadcast it along the sequence. Every position
other than the scored one then carries a wrong value that nothing reads; the scored position
carries the exact value, and the gradient of every weight is that of the full forward (the
broadcast's backward sums the zero gradients of unread positions). With `index=None` the
feed-forward is skipped entirely: for a forward whose last-layer outputs are never read (the
prompt pass of `lm.shared_prompt`, which is kept for its key/value cache).

It applies to architectures whose decoder block adds `self.mlp(x)` to the residual stream
(`SUPPORTED`); on others, and under gradient checkpointing (whose recomputation in backward
must see the same shapes), it is a no-op.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import torch

# Decoder blocks of the form `h = residual + mlp(norm(h))` (post-norm on the MLP output allowed).
SUPPORTED = frozenset({"gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt_neox", "phi3"})


def scored_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """(N,) the position a sequence-classification head reads: the rightmost non-pad token
    (the rule of transformers' `*ForSequenceClassification`)."""
    T = input_ids.shape[-1]
    if pad_token_id is None:
        return torch.full(input_ids.shape[:1], T - 1, dtype=torch.long, device=input_ids.device)
    positions = torch.arange(T, device=input_ids.device, dtype=torch.int32)
    return (positions * (input_ids != pad_token_id).to(torch.int32)).argmax(-1).long()  # (N,)


def checkpointing(model: Any) -> bool:
    """Whether gradient checkpointing is on in any of `model`'s modules (as transformers sets it)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def last_block_mlp(model: Any) -> torch.nn.Module | None:
    """The last decoder block's `mlp`, or None where the shortcut does not apply."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED:
        return None
    if checkpointing(model):
        return None
    if model not in _FOUND:  # the search walks every module's name: once per model, not per forward
        blocks = [m for name, m in model.named_modules()
                  if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("h", "layers") and len(m)]
        mlp = getattr(blocks[0][-1], "mlp", None) if len(blocks) == 1 else None
        _FOUND[model] = mlp if isinstance(mlp, torch.nn.Module) else None
    return _FOUND[model]


_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its last block's mlp (or None)


@contextmanager
def feed_forward_at(model: Any, index: torch.Tensor | None) -> Iterator[bool]:
    """While active, the last block's MLP runs at row i's position index[i] only ((N,) long),
    or nowhere when `index` is None. Yields whether the shortcut is on."""
    mlp = last_block_mlp(model)
    if mlp is None:
        yield False
        return

    def gather(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        x = args[0]  # (N, T, d)
        if index is None:
            return (x[:, :0],) + args[1:], kwargs  # (N, 0, d): nothing to compute
        rows = x.gather(1, index.to(x.device).view(-1, 1, 1).expand(-1, 1, x.shape[-1]))  # (N, 1, d)
        return (rows,) + args[1:], kwargs

    def broadcast(_module: torch.nn.Module, _args: tuple, _kwargs: dict, out: torch.Tensor) -> torch.Tensor:
        return out.new_zeros(()) if index is None else out  # () or (N, 1, d): broadcast over T

    handles = [mlp.register_forward_pre_hook(gather, with_kwargs=True),
               mlp.register_forward_hook(broadcast, with_kwargs=True)]
    try:
        yield True
    finally:
        for h in handles:
            h.remove()
