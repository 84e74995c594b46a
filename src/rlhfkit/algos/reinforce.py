"""REINFORCE with a baseline on the KL-penalized reward (Williams 1992; the lectures'
Monte-Carlo policy gradient):

    theta <- theta + alpha * 1/n * sum_i (R(x_i, y_i) - b_i) grad log pi(y_i | x_i),
    R(x, y) = r(x, y) - beta * sum_t log pi(y_t|.) / pi_ref(y_t|.).

The baseline b_i is the mean reward of the other samples for the same prompt
(leave-one-out) or the batch mean. One gradient step per rollout batch: the samples come
from the current policy, so no clipping.

RLOO (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs"; after Kool et al. 2019) is this method with k samples
per prompt and the leave-one-out baseline: `rlhfkit rloo` runs it with those defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.lm.forward import response_forward
from rlhfkit.lm.models import LoRAConfig
from rlhfkit.lm.sampling import generate
from rlhfkit.logging import get_logger
from rlhfkit.ops.kl import kl_estimate
from rlhfkit.ops.losses import LossOutput
from rlhfkit.ops.policy_gradient import leave_one_out_baseline
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import Dist, accelerator_for
from rlhfkit.train.online import (
    KLConfig,
    RolloutConfig,
    Setup,
    drive,
    gold_metrics,
    kl_controller,
    no_dropout,
    per_process,
    score_rollout,
    setup,
)
from rlhfkit.train.rewards import reward_specs
from rlhfkit.train.rollouts import RewardNormalizer, VLLMSampler, rollout_sampler

log = get_logger(__name__)


@dataclass
class ReinforceConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference policy")
    reward_model: str | None = F(None, "reward model folder (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed")
    rollout: RolloutConfig = F(RolloutConfig(batch_prompts=32), "sampling (prompts per batch, global)")
    kl: KLConfig = F(KLConfig(), "the KL penalty to the reference policy")
    samples_per_prompt: int = F(2, "responses per prompt (>= 2 for the leave-one-out baseline)")
    baseline: Literal["leave_one_out", "batch_mean", "none"] = F("leave_one_out", "variance-reducing baseline")
    iterations: int = F(60, "rollout batches (one gradient step each)")
    lr: float = F(1e-4, "Adam learning rate")
    grad_clip: float = F(1.0, "max gradient norm")
    checkpoint_every: int = F(20, "iterations between checkpoints (0: only the final model)")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters on the policy (off by default); the reference is then the "
                                       "policy with its adapter disabled, and final/ holds the merged model")
    mixed_precision: str = F("fp32", "autocast for sampling, scoring and training: fp32 (none), bf16 or fp16 (bf16 on GPUs)")
    gradient_checkpointing: bool = F(False, "recompute the policy's activations in the backward pass: less memory")

    method: ClassVar[str] = "reinforce"


@dataclass
class RLOOConfig(ReinforceConfig):
    """REINFORCE Leave-One-Out with the paper's choices: k = 4 samples per prompt, each one's
    baseline the mean reward of the other three (Ahmadian et al. 2024, sec. 3.2)."""

    samples_per_prompt: int = F(4, "responses per prompt (k)")
    baseline: Literal["leave_one_out", "batch_mean", "none"] = F("leave_one_out", "variance-reducing baseline")
    rollout: RolloutConfig = F(RolloutConfig(batch_prompts=16), "sampling (prompts per batch, global)")

    method: ClassVar[str] = "rloo"


def baseline(rewards: torch.Tensor, k: int, kind: str, dist: Dist | None = None) -> torch.Tensor:
    """b_i for rewards laid out prompt-major, k samples per prompt: (B*k,) -> (B*k,). The batch
    mean (also the fallback with one sample per prompt) is the global batch's under DDP."""
    if kind == "none":
        return torch.zeros_like(rewards)
    if kind == "batch_mean" or k < 2:
        return (dist or Dist()).mean(rewards).expand_as(rewards)
    return rewards - leave_one_out_baseline(rewards, k)  # the mean of the other k - 1 samples


def reinforce_loss(seq_logp: torch.Tensor, advantages: torch.Tensor) -> LossOutput:
    """-1/n sum_i A_i log pi(y_i|x_i): its gradient is the REINFORCE estimator."""
    loss = -(advantages.detach() * seq_logp).mean()
    return LossOutput(loss, {"advantage_abs": advantages.abs().mean().item()})


def run(cfg: ReinforceConfig) -> dict:
    name = cfg.method
    seed_everything(cfg.seed)
    acc = accelerator_for(cfg.device, cfg.mixed_precision)
    run_dir = RunDir.create(cfg.out or f"runs/{name}", cfg)
    s = setup(cfg.policy, reward_specs(cfg.rewards, cfg.reward_model), cfg.rollout, cfg.seed, name, cfg.lora, acc)
    policy, tok = s.policy, s.tokenizer
    no_dropout(policy, cfg.gradient_checkpointing)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-5)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    k, B, W = cfg.samples_per_prompt, cfg.rollout.batch_prompts, s.dist.world
    sampler = rollout_sampler(cfg.rollout.backend, cfg.policy, policy, tok, cfg.rollout.max_new_tokens, B * k,
                              cfg.seed, W)
    accounting = [("processes", W), ("prompts per rollout batch (global)", B),
                  ("prompts per process", per_process(B, W)), ("samples per prompt", k),
                  ("samples per rollout batch", B * k),
                  ("response tokens per rollout batch (max)", B * k * cfg.rollout.max_new_tokens),
                  ("optimizer steps per rollout batch", 1), ("rollout batches", cfg.iterations)]

    def step(it: int, opt: Any) -> dict[str, float]:
        return reinforce_iteration(s, policy, tok, opt, kl_ctl, norm, cfg, sampler)

    return drive(cfg, s, acc, run_dir, name, policy, opt, kl_ctl, norm, step, accounting)


def reinforce_iteration(s: Setup, policy, tok, opt, kl_ctl, norm: RewardNormalizer, cfg: ReinforceConfig,
                        sampler: VLLMSampler | None = None) -> dict[str, float]:
    """One rollout batch (this process's prompts, k samples each) and one gradient step. In a
    distributed run the loss is weighted by W * (local samples / global samples), so DDP's
    gradient average is the global batch's mean; the batch-mean baseline is the global mean."""
    rc, k, d = cfg.rollout, cfg.samples_per_prompt, s.dist
    prompts = [p for p in s.next_prompts(rc.batch_prompts) for _ in range(k)]  # prompt-major
    with torch.no_grad(), s.autocast():
        rollout = (generate(policy, tok, prompts, max_new_tokens=rc.max_new_tokens, temperature=rc.temperature)
                   if sampler is None else sampler(policy, tok, prompts, rc.max_new_tokens, rc.temperature))
        ref = s.reference(rollout)
        raw, reward_parts = score_rollout(s, rollout)  # (N,)
    mask = rollout.response_mask.float()  # (N, R)
    module = s.train_module if s.train_module is not None else policy  # what DDP trains through
    new = response_forward(module, rollout)
    kl = (kl_estimate(new.logp.detach(), ref.logp, cfg.kl.estimator) * mask).sum(-1)  # (N,)
    reward = norm(raw, d.gather(raw) if norm.mean is None else None) - kl_ctl.value * kl  # (N,)
    adv = reward - baseline(reward, k, cfg.baseline, d)
    out = reinforce_loss((new.logp * mask).sum(-1), adv)
    loss = out.loss * d.share_weight(len(prompts))  # DDP's mean of shards = the global batch's mean
    d.backward(opt, loss, cfg.grad_clip, module)
    seq_kl = d.mean_metrics({"kl": kl.mean().item()}, len(prompts))["kl"]
    kl_ctl.update(seq_kl, rc.batch_prompts * k)
    local = {f"{cfg.method}/loss": out.loss.item(), **{f"{cfg.method}/{a}": b for a, b in out.metrics.items()},
             "rollout/score": raw.mean().item(), "rollout/length": mask.sum(-1).mean().item(),
             "rollout/reward": reward.mean().item(), **reward_parts, **gold_metrics(s, raw, rollout.prompts, rollout.responses)}
    return {"rollout/kl": seq_kl, "rollout/beta": kl_ctl.value, **d.mean_metrics(local, len(prompts))}
