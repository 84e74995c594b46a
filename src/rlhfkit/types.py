"""Frozen batches handed between stages. Shapes: B batch, T tokens."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TypeVar

import torch

B = TypeVar("B")


def batch_to(batch: B, device: torch.device | str) -> B:
    """The same frozen batch with every tensor field on `device`."""
    return replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in fields(batch)  # type: ignore[arg-type]
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


@dataclass(frozen=True)
class SFTBatch:
    """Token ids with a loss mask (1 on the tokens the model is trained to produce)."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    loss_mask: torch.Tensor  # (B, T), aligned with input_ids (the target positions)


@dataclass(frozen=True)
class PreferenceBatch:
    """Pairs of (prompt + response) sequences; `target` is mu (1 preferred, 0.5 tie)."""

    chosen_ids: torch.Tensor  # (B, T)
    chosen_attention: torch.Tensor  # (B, T)
    chosen_response_mask: torch.Tensor  # (B, T)
    rejected_ids: torch.Tensor  # (B, T)
    rejected_attention: torch.Tensor  # (B, T)
    rejected_response_mask: torch.Tensor  # (B, T)
    target: torch.Tensor  # (B,)
    weight: torch.Tensor  # (B,)


@dataclass(frozen=True)
class Rollout:
    """Sampled responses: `ids` = prompt (left-padded) + response (right-padded)."""

    ids: torch.Tensor  # (B, P + R)
    attention_mask: torch.Tensor  # (B, P + R)
    response_mask: torch.Tensor  # (B, R): 1 on generated tokens up to and including EOS
    prompt_len: int  # P
    prompts: tuple[str, ...]
    responses: tuple[str, ...]
