"""Frozen batches handed between stages. Shapes: B batch, T tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
