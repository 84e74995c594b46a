"""Every forward that turns a policy's logits into what the online methods read: the per-token
log-probs (and entropy, values) of sampled responses, the value head and the actor-critic
module that carries it, and the sequence KL between two policies.

Positions: a rollout is [left-padded prompt (P) | response (R)]. The logits at
positions P-1 .. P+R-2 predict the R response tokens, and the hidden state there is
the state from which each response token is chosen (where the value head reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from rlhfkit.lm.data import keeps_logits, position_ids
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



def take(rollout: Rollout, idx: Sequence[int]) -> Rollout:
    """The rows `idx` of a rollout (the prompt length stays shared)."""
    i = torch.as_tensor(list(idx), dtype=torch.long, device=rollout.ids.device)
    return Rollout(rollout.ids[i], rollout.attention_mask[i], rollout.response_mask[i], rollout.prompt_len,
                   tuple(rollout.prompts[j] for j in idx), tuple(rollout.responses[j] for j in idx))
