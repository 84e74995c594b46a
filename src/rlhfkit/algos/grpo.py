"""Group Relative Policy Optimization (GRPO; Shao et al. 2024, DeepSeekMath sec. 4.1) and its
descendants, on any reward: a reward model, reward functions (verifiers), or a sum of them.

Each iteration:
1. sample G responses for each of B prompts from the current policy;
2. score them; the advantage of response i is its reward relative to its group,
   A_i = (r_i - mean(r_group)) / s, with s the group's std (GRPO), the batch's std, or 1
   (Dr. GRPO, Liu et al. 2025) -- no value network;
3. take `epochs` passes of the clipped surrogate over the batch, with separate low/high clip
   ranges (DAPO's clip-higher, Yu et al. 2025), reduced by `loss_type` (grpo, dr_grpo, dapo,
   bnpo: `ops.policy_gradient.LOSS_TYPES`);
4. keep the policy near the reference with a KL term in the loss (k3, GRPO eq. 4, or the
   importance-weighted, bias-corrected k3), or a k1 penalty in the reward, or none: with
   beta = 0 no reference model is loaded at all.
Optionally, completions cut off at the length limit are left out of the loss (DAPO sec. 3.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.lm.forward import response_forward, take
from rlhfkit.lm.models import LoRAConfig
from rlhfkit.lm.sampling import generate
from rlhfkit.logging import get_logger
from rlhfkit.ops.kl import kl_estimate
from rlhfkit.ops.policy_gradient import group_advantages, grpo_loss
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import accelerator_for
from rlhfkit.train.online import (
    RolloutConfig,
    Setup,
    drive,
    gold_metrics,
    no_dropout,
    per_process,
    score_rollout,
    setup,
)
from rlhfkit.train.rewards import reward_specs
from rlhfkit.train.rollouts import rollout_sampler
from rlhfkit.types import Rollout

log = get_logger(__name__)


@dataclass
class GRPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference policy")
    reward_model: str | None = F(None, "reward model folder from `rlhfkit rm` (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed")
    rollout: RolloutConfig = F(RolloutConfig(batch_prompts=16), "sampling (prompts per batch, global)")
    group_size: int = F(4, "G: responses sampled per prompt")
    scale_rewards: Literal["group", "batch", "none"] = F("group", "divide advantages by the group's std (GRPO), "
                                                                  "the batch's, or nothing (Dr. GRPO)")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = F("dapo", "how per-token losses are averaged "
                                                                      "(see ops.policy_gradient)")
    epsilon_low: float = F(0.2, "clip the ratio from below at 1 - epsilon_low")
    epsilon_high: float = F(0.2, "clip the ratio from above at 1 + epsilon_high (DAPO uses 0.28)")
    epochs: int = F(1, "passes over each rollout batch (1: on-policy, the ratio is 1 at the step)")
    minibatch: int = F(0, "samples per optimizer step (global, all processes); 0: the whole batch")
    beta: float = F(0.0, "KL weight (0: no KL term and no reference model)")
    kl_mode: Literal["loss", "reward"] = F("loss", "KL as a term in the loss, or as a k1 penalty in the reward")
    kl_estimator: Literal["k3", "k3_is", "k1", "k2"] = F("k3_is", "estimator in the loss: k3 (GRPO eq. 4) or the "
                                                                  "bias-corrected k3_is (ratio-weighted)")
    mask_truncated: bool = F(False, "leave responses that hit max_new_tokens without an EOS out of the loss")
    iterations: int = F(60, "rollout batches")
    lr: float = F(1e-5, "Adam learning rate")
    grad_clip: float = F(1.0, "max gradient norm")
    checkpoint_every: int = F(20, "iterations between checkpoints (0: only the final model)")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters on the policy (off by default); the reference is then the "
                                       "policy with its adapter disabled, and final/ holds the merged model")
    mixed_precision: str = F("fp32", "autocast for sampling, scoring and training: fp32, bf16 or fp16")
    gradient_checkpointing: bool = F(False, "recompute the policy's activations in the backward pass: less memory")


class _NoKL:
    """GRPO keeps no adaptive beta: the checkpoint's "kl" and "reward_norm" slots stay empty."""

    value = 0.0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def run(cfg: GRPOConfig) -> dict:
    if cfg.group_size < 2:
        raise UserError(f"grpo: group_size must be at least 2 (advantages are relative to the group), "
                        f"got {cfg.group_size}")
    seed_everything(cfg.seed)
    acc = accelerator_for(cfg.device, cfg.mixed_precision)
    run_dir = RunDir.create(cfg.out or "runs/grpo", cfg)
    s = setup(cfg.policy, reward_specs(cfg.rewards, cfg.reward_model), cfg.rollout, cfg.seed, "grpo", cfg.lora,
              acc, ref=cfg.beta > 0)
    no_dropout(s.policy, cfg.gradient_checkpointing)
    opt = torch.optim.Adam([p for p in s.policy.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-8)
    G, B, W = cfg.group_size, cfg.rollout.batch_prompts, s.dist.world
    sampler = rollout_sampler(cfg.rollout.backend, cfg.policy, s.policy, s.tokenizer, cfg.rollout.max_new_tokens,
                              B * G, cfg.seed, W)
    mb = cfg.minibatch or B * G
    accounting = [("processes", W), ("prompts per rollout batch (global)", B),
                  ("prompts per process", per_process(B, W)), ("samples per prompt (G)", G),
                  ("samples per rollout batch", B * G), ("samples per optimizer step (global)", mb),
                  ("optimizer steps per rollout batch", cfg.epochs * -(-B * G // mb)),
                  ("rollout batches", cfg.iterations)]
    state = _NoKL()

    def step(it: int, opt: Any) -> dict[str, float]:
        return grpo_iteration(s, opt, cfg, sampler)

    return drive(cfg, s, acc, run_dir, "grpo", s.policy, opt, state, state, step, accounting)


def grpo_iteration(s: Setup, opt: Any, cfg: GRPOConfig, sampler: Any = None) -> dict[str, float]:
    """One rollout batch (this process's prompts, G samples each) and the updates on it."""
    rc, G, d = cfg.rollout, cfg.group_size, s.dist
    policy, tok = s.policy, s.tokenizer
    prompts = [p for p in s.next_prompts(rc.batch_prompts) for _ in range(G)]  # prompt-major groups
    with torch.no_grad(), s.autocast():
        rollout = (generate(policy, tok, prompts, max_new_tokens=rc.max_new_tokens, temperature=rc.temperature)
                   if sampler is None else sampler(policy, tok, prompts, rc.max_new_tokens, rc.temperature))
        ref = s.reference(rollout).logp if cfg.beta > 0 else None  # (N, R)
    raw, reward_parts = score_rollout(s, rollout)  # (N,)
    mask = rollout.response_mask.float()  # (N, R)
    reward, seq_kl, sampling_logp = raw, None, None
    if cfg.beta > 0:  # the KL to the reference, logged in either mode, a penalty in "reward" mode
        with torch.no_grad(), s.autocast():
            sampling_logp = response_forward(policy, rollout).logp  # (N, R)
        seq_kl = (kl_estimate(sampling_logp, ref, "k1") * mask).sum(-1)  # (N,)
        if cfg.kl_mode == "reward":
            reward = raw - cfg.beta * seq_kl
    adv = _advantages(reward, G, cfg.scale_rewards, d)  # (N,)
    truncated = _truncated(rollout, tok.eos_token_id, rc.max_new_tokens)  # (N,)
    loss_mask = mask * (~truncated).float().unsqueeze(1) if cfg.mask_truncated else mask  # (N, R)
    m = _update(s, opt, rollout, adv, loss_mask, ref if cfg.kl_mode == "loss" else None, cfg, sampling_logp)
    local = {"rollout/score": raw.mean().item(), "rollout/length": mask.sum(-1).mean().item(),
             "rollout/truncated": truncated.float().mean().item(),
             "rollout/reward_std_in_group": reward.view(-1, G).std(1).mean().item(),
             **reward_parts, **gold_metrics(s, raw, rollout.prompts, rollout.responses)}
    if seq_kl is not None:
        local["rollout/kl"] = seq_kl.mean().item()
    return {**m, **d.mean_metrics(local, len(prompts))}


def _advantages(reward: torch.Tensor, G: int, scale: str, d: Any) -> torch.Tensor:
    """Group-relative advantages; the "batch" std is the global batch's (every process's rewards)."""
    if scale != "batch":
        return group_advantages(reward, G, scale)
    return group_advantages(reward, G, "none") / (d.gather(reward).std() + 1e-4)


def _truncated(rollout: Rollout, eos_id: int | None, max_new_tokens: int) -> torch.Tensor:
    """(N,) True where the response used every token it was allowed and did not end in EOS."""
    lengths = rollout.response_mask.sum(-1)  # (N,)
    last = rollout.ids[:, rollout.prompt_len:].gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    return (lengths >= max_new_tokens) & (last != eos_id if eos_id is not None else True)


# loss_type -> what its reduction divides by, counted in a (n, R) loss mask: DDP weighs each
# process's loss by its share of that count, so the gradient average is the global minibatch's.
LOSS_COUNTS: dict[str, Callable[[torch.Tensor], float]] = {
    "grpo": lambda m: (m.sum(-1) > 0).sum().item(),  # sequences with an active token
    "dr_grpo": lambda m: m.shape[0],  # every row: B * max_len is the denominator
    "dapo": lambda m: m.sum().item(),  # active tokens
    "bnpo": lambda m: m.sum().item(),
}


def _update(s: Setup, opt: Any, rollout: Rollout, adv: torch.Tensor, mask: torch.Tensor,
            ref_logp: torch.Tensor | None, cfg: GRPOConfig, sampling_logp: torch.Tensor | None = None
            ) -> dict[str, float]:
    """`epochs` passes of minibatch updates, each minibatch a slice of the global batch (this
    process steps on its rows of it). With one epoch of one minibatch the sampling policy is
    the one being updated, so its log-probs are the training forward's own, detached; otherwise
    they are `sampling_logp` (N, R) when the caller has them, else computed here."""
    module = s.train_module if s.train_module is not None else s.policy
    total = cfg.rollout.batch_prompts * cfg.group_size  # samples in the global batch
    size = cfg.minibatch or total
    old = None
    if not (cfg.epochs == 1 and size >= total):
        old = sampling_logp
        if old is None:
            with torch.no_grad(), s.autocast():
                old = response_forward(s.policy, rollout).logp  # (N, R)
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        for start in range(0, total, size):
            rows = s.dist.local_rows(range(start, min(total, start + size)), cfg.group_size)
            i = torch.tensor(rows or [0], device=rollout.ids.device)
            new = response_forward(module, take(rollout, i.tolist())).logp  # (n, R)
            if not rows or not mask[i].any():  # none of this minibatch here, or all truncated and
                s.dist.backward(opt, new.sum() * 0.0 * s.dist.share_weight(0), cfg.grad_clip, module)  # masked:
                continue  # a zero step, so every process takes part in every step
            old_i = new.detach() if old is None else old[i]
            out = grpo_loss(new, old_i, adv[i], mask[i], loss_type=cfg.loss_type, eps_low=cfg.epsilon_low,
                            eps_high=cfg.epsilon_high, beta=cfg.beta if ref_logp is not None else 0.0,
                            ref_logp=ref_logp[i] if ref_logp is not None else None,
                            kl_estimator=cfg.kl_estimator, max_len=cfg.rollout.max_new_tokens)
            count = LOSS_COUNTS[cfg.loss_type](mask[i])  # what this loss is a mean over, here
            s.dist.backward(opt, out.loss * s.dist.share_weight(count), cfg.grad_clip, module)
            for k, v in out.metrics.items():
                stats.setdefault(k, []).append(v)
    return s.dist.step_metrics(stats, "grpo", len(rollout.prompts))
