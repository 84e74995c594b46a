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


@dataclass(frozen=True)
class PPOBatch:
    """What a PPO update reads (one process's share of a rollout batch): the rollout, the sampling
    policy's log-probs and value estimates, and the advantages and returns computed from them.
    B samples, R response tokens; every (B, R) tensor is masked by `rollout.response_mask`."""

    rollout: Rollout
    old_logp: torch.Tensor  # (B, R) log pi_old(y_t | x, y_<t), no gradient
    old_values: torch.Tensor  # (B, R) V_old(s_t), no gradient
    advantages: torch.Tensor  # (B, R) GAE, whitened if asked
    returns: torch.Tensor  # (B, R) value targets: advantages + old values (before whitening)

    def __post_init__(self) -> None:
        shape = self.rollout.response_mask.shape
        for name in ("old_logp", "old_values", "advantages", "returns"):
            assert getattr(self, name).shape == shape, f"{name} {tuple(getattr(self, name).shape)} vs mask {tuple(shape)}"
