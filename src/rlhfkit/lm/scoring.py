"""The reward model's forward: r(x, y) read at the last response token of a scalar-head model,
for training batches (`scalar_scores`) and for scoring text (`score`, `RewardModel`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rlhfkit.lm.data import encode_pairs, pad_right
from rlhfkit.lm.models import reward_model_from
from rlhfkit.lm.sampling import sample_completions
from rlhfkit.lm.scored_position import feed_forward_at, scored_index


def scalar_scores(model, ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """r(x, y) of right-padded sequences (N, T) -> (N,); the last block's feed-forward runs at
    the scored position only (`lm.scored_position`)."""
    with feed_forward_at(model, scored_index(ids, model.config.pad_token_id)):
        return model(input_ids=ids, attention_mask=att).logits[:, 0]


@torch.no_grad()
def score(model, tok, prompts: Sequence[str], responses: Sequence[str], max_len: int, batch_size: int = 128
          ) -> torch.Tensor:
    """r(x, y) for each pair, (N,)."""
    model.eval()
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = encode_pairs(tok, prompts[i:i + batch_size], responses[i:i + batch_size], max_len)
        ids, att = pad_right([e[0] for e in enc], tok.pad_token_id)
        out.append(scalar_scores(model, ids.to(model.device), att.to(model.device)).float().cpu())
    model.train()
    return torch.cat(out) if out else torch.zeros(0)


class RewardModel:
    """A trained reward model as a scorer of (prompt, response) text pairs."""

    def __init__(self, path: str | Path, max_len: int = 96, batch_size: int = 128) -> None:
        self.model, self.tokenizer = reward_model_from(path)
        self.model.requires_grad_(False)
        self.max_len, self.batch_size = max_len, batch_size

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return score(self.model, self.tokenizer, prompts, responses, self.max_len, self.batch_size)


def best_of_n(policy, tok, reward: Callable[[Sequence[str], Sequence[str]], torch.Tensor], prompts: Sequence[str],
              n: int, batch_size: int = 128, **gen_kwargs) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Best-of-n (rejection sampling; Stiennon et al. 2020, Nakano et al. 2021): n samples per prompt,
    the one `reward` scores highest kept -> (best response per prompt, its score (P,), all scores (P, n))."""
    if not prompts:  # a process whose share of a small global batch is empty
        return [], torch.zeros(0), torch.zeros(0, n)
    items = sample_completions(policy, tok, prompts, n, batch_size, desc=f"best-of-{n} sampling", **gen_kwargs)
    flat_p = [c.prompt for c in items for _ in c.responses]
    flat_r = [r for c in items for r in c.responses]
    scores = reward(flat_p, flat_r).view(len(items), n)  # (P, n)
    best = scores.argmax(1)
    return [items[i].responses[int(b)] for i, b in enumerate(best)], scores.max(1).values, scores
