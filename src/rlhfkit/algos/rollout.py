"""What the online methods share: sampling a batch, scoring it with the reward model,
and the per-token log-probs (and values) of the sampled responses.

Positions: a rollout is [left-padded prompt (P) | response (R)]. The logits at
positions P-1 .. P+R-2 predict the R response tokens, and the hidden state there is
the state from which each response token is chosen (where the value head reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.algos.reward_model import score
from rlhfkit.errors import UserError
from rlhfkit.lm.data import keeps_logits, position_ids
from rlhfkit.lm.models import reward_model_from
from rlhfkit.ops.logprobs import entropy_from_logits, response_logprobs
from rlhfkit.types import Rollout


class ValueHead(nn.Module):
    """V(s_t) from the policy's last hidden state (the backbone is shared, as in Ziegler et al. 2019)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)  # (B, T, H) -> (B, T)

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "value_head.safetensors"))

    def load(self, folder: Path) -> None:
        self.load_state_dict(load_file(str(folder / "value_head.safetensors")))


def _keep_from(model: nn.Module, ids: torch.Tensor, start: int) -> dict[str, int]:
    """`logits_to_keep` for positions start .. T-1 when the model takes it: the LM head (the
    largest matmul of a small model) then skips the prompt, whose logits no loss reads."""
    return {"logits_to_keep": ids.shape[1] - start} if keeps_logits(model) else {}


class ActorCritic(nn.Module):
    """The policy and its value head as one module (the head reads the policy's backbone), so a
    single DDP/FSDP wrapper syncs the gradients of both."""

    def __init__(self, policy: PreTrainedModel, value_head: ValueHead) -> None:
        super().__init__()
        self.policy, self.value_head = policy, value_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and values at positions start .. T-2 (those that choose response tokens)."""
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          output_hidden_states=True, **_keep_from(self.policy, input_ids, start))
        logits = out.logits[:, -(input_ids.shape[1] - start):-1]  # (B, R, V): positions start .. T-2
        return logits, self.value_head(out.hidden_states[-1][:, start:-1])  # (B, R, V), (B, R)


@dataclass(frozen=True)
class ResponseStats:
    logp: torch.Tensor  # (B, R) log pi(y_t | x, y_<t)
    entropy: torch.Tensor  # (B, R)
    values: torch.Tensor | None  # (B, R)


def detached(stats: ResponseStats) -> ResponseStats:
    return ResponseStats(stats.logp.detach(), stats.entropy.detach(),
                         None if stats.values is None else stats.values.detach())


def response_forward(model: PreTrainedModel, rollout: Rollout, value_head: ValueHead | None = None,
                     with_entropy: bool = False) -> ResponseStats:
    """Log-probs (and entropy, values) of the rollout's response tokens under `model`."""
    P = rollout.prompt_len
    out = model(input_ids=rollout.ids, attention_mask=rollout.attention_mask,
                position_ids=position_ids(rollout.attention_mask), output_hidden_states=value_head is not None,
                **_keep_from(model, rollout.ids, P - 1))
    logits = out.logits[:, -(rollout.ids.shape[1] - P + 1):-1]  # (B, R, V): positions P-1 .. T-2
    values = value_head(out.hidden_states[-1][:, P - 1:-1]) if value_head is not None else None
    return _stats(logits, values, rollout, with_entropy)


def actor_critic_forward(ac: nn.Module, rollout: Rollout, with_entropy: bool = False) -> ResponseStats:
    """`response_forward` through an `ActorCritic` (or the DDP wrapper around one)."""
    P = rollout.prompt_len
    logits, values = ac(rollout.ids, rollout.attention_mask, position_ids(rollout.attention_mask), P - 1)
    return _stats(logits, values, rollout, with_entropy)


def _stats(logits: torch.Tensor, values: torch.Tensor | None, rollout: Rollout, with_entropy: bool) -> ResponseStats:
    logp = response_logprobs(logits, rollout.ids[:, rollout.prompt_len:])  # (B, R)
    ent = entropy_from_logits(logits) if with_entropy else torch.zeros_like(logp)
    return ResponseStats(logp, ent, values)


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
    from rlhfkit.lm.vllm_backend import VLLMEngine

    dtype = next(policy.parameters()).dtype
    return VLLMSampler(VLLMEngine(policy_dir, tokenizer, max_new_tokens, max_num_seqs, seed, dtype))


class RewardModel:
    """A trained reward model as a scorer of (prompt, response) text pairs."""

    def __init__(self, path: str | Path, max_len: int = 96, batch_size: int = 128) -> None:
        self.model, self.tokenizer = reward_model_from(path)
        self.model.requires_grad_(False)
        self.max_len, self.batch_size = max_len, batch_size

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return score(self.model, self.tokenizer, prompts, responses, self.max_len, self.batch_size)


@torch.no_grad()
def sequence_kl(policy: PreTrainedModel, ref: PreTrainedModel, rollout: Rollout) -> torch.Tensor:
    """Monte-Carlo KL(pi || pi_ref) per sample: sum over response tokens of log pi - log pi_ref, (B,)."""
    lp = response_forward(policy, rollout).logp
    ref_lp = response_forward(ref, rollout).logp
    return ((lp - ref_lp) * rollout.response_mask).sum(-1)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    import copy

    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def tokenizer_of(model_dir: str | Path) -> PreTrainedTokenizerBase:
    from rlhfkit.lm.models import load_tokenizer

    return load_tokenizer(model_dir)


def take(rollout: Rollout, idx: Sequence[int]) -> Rollout:
    """The rows `idx` of a rollout (the prompt length stays shared)."""
    i = torch.as_tensor(list(idx), dtype=torch.long, device=rollout.ids.device)
    return Rollout(rollout.ids[i], rollout.attention_mask[i], rollout.response_mask[i], rollout.prompt_len,
                   tuple(rollout.prompts[j] for j in idx), tuple(rollout.responses[j] for j in idx))


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
