"""The online methods' rollout machinery: where samples come from (HF generate or a vLLM
engine), the stream of training prompts (its position saved in checkpoints), and the reward
normalization fixed on the first batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.errors import UserError
from rlhfkit.lm.scoring import best_of_n
from rlhfkit.types import Rollout

ROLLOUT_BACKENDS = ("hf", "vllm")



class VLLMSampler:
    """Rollouts from a vLLM engine (`rlhfkit[vllm]`) that is handed the policy's weights before
    every batch, i.e. after the updates on the previous one. Only token ids come back: the
    log-probs are the trainer's own forward, as with HF `generate`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                 max_new_tokens: int, temperature: float) -> Rollout:
        self.engine.sync_weights(policy)
        device = next(policy.parameters()).device
        return self.engine.generate(prompts, max_new_tokens, temperature, device=device)



def rollout_sampler(backend: str, policy_dir: str | Path | None, policy: nn.Module,
                    tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, max_num_seqs: int, seed: int,
                    world: int = 1) -> VLLMSampler | None:
    """The sampler `rollout.backend` names: None for hf (the trainers call `generate`)."""
    if backend not in ROLLOUT_BACKENDS:
        raise UserError(f"rollout.backend must be one of {', '.join(ROLLOUT_BACKENDS)}, got {backend!r}")
    if backend == "hf":
        return None
    if world > 1:
        raise UserError(f"rollout.backend=vllm runs in one process for now ({world} were launched): "
                        "use rollout.backend=hf under accelerate launch")
    if policy_dir is None:
        raise UserError("rollout.backend=vllm builds its engine from the policy folder: give --policy PATH")
    from rlhfkit.lm.gguf import is_gguf_spec

    if is_gguf_spec(policy_dir):
        raise UserError(f"rollout.backend=vllm builds its engine from a Hugging Face folder, not GGUF {policy_dir}: "
                        f"rlhfkit convert-gguf {policy_dir} --out DIR, then --policy DIR")
    from rlhfkit.lm.vllm_backend import VLLMEngine

    dtype = next(policy.parameters()).dtype
    return VLLMSampler(VLLMEngine(policy_dir, tokenizer, max_new_tokens, max_num_seqs, seed, dtype))



def tokenizer_of(model_dir: str | Path) -> PreTrainedTokenizerBase:
    from rlhfkit.lm.models import load_tokenizer

    return load_tokenizer(model_dir)



class PromptStream:
    """Endless shuffled passes over the training prompts; its position is saved in checkpoints."""

    def __init__(self, prompts: Sequence[str], seed: int) -> None:
        if not prompts:
            raise UserError("no training prompts")
        self.prompts, self.seed, self.cursor = list(prompts), seed, 0

    def next(self, n: int) -> list[str]:
        import random

        out = []
        for _ in range(n):
            epoch, pos = divmod(self.cursor, len(self.prompts))
            order = list(range(len(self.prompts)))
            random.Random(self.seed * 104729 + epoch).shuffle(order)
            out.append(self.prompts[order[pos]])
            self.cursor += 1
        return out



@dataclass
class RewardNormalizer:
    """Scores shifted and scaled to mean 0, std 1 on the first rollout batch, i.e. on samples
    of the initial (SFT) policy, then held fixed (Ziegler et al. 2019, sec. 2.2)."""

    mean: float | None = None
    std: float | None = None

    def __call__(self, scores: torch.Tensor, first_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized `scores`; the statistics come from `first_batch` (default: `scores`) the
        first time (a distributed run passes the global batch's scores)."""
        if self.mean is None:
            ref = scores if first_batch is None else first_batch
            self.mean = ref.mean().item()
            self.std = max(ref.std().item(), 1e-6) if ref.numel() > 1 else 1.0
        return (scores - self.mean) / self.std

    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.mean, self.std = state["mean"], state["std"]


def best_of_n_gathered(policy, tok, reward: Callable[[Sequence[str], Sequence[str]], torch.Tensor], mine: Sequence[str], n: int, dist,
                       **gen_kwargs) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
    """`best_of_n` of this process's share `mine` (`Dist.shard` of a global batch), gathered:
    every process gets the whole batch back in its order -> (prompts, best responses, their
    scores (P,), all scores (P, n)). With one process, `best_of_n` of `mine`."""
    best, top, scores = best_of_n(policy, tok, reward, mine, n, **gen_kwargs)
    if dist.world == 1:
        return list(mine), best, top, scores
    rows = dist.gather_shards(list(zip(mine, best, top.tolist(), scores.tolist())))
    return ([p for p, *_ in rows], [b for _, b, *_ in rows], torch.tensor([t for *_, t, _ in rows]),
            torch.tensor([s for *_, s in rows]).view(len(rows), n))  # (P,), (P, n)
