"""PPO against a learned reward with a KL penalty to the reference policy
(Ziegler et al. 2019; Stiennon et al. 2020; InstructGPT step 3, Ouyang et al. 2022).

Each iteration, as in the papers:
1. sample one response per prompt from the current policy;
2. score it with the reward model (normalized to mean 0, std 1 on the SFT policy's samples);
3. per-token reward R_t = -beta KL_t, plus the score on the last token
   (R(x, y) = r(x, y) - beta log pi(y|x) / pi_ref(y|x), summed over tokens);
4. GAE advantages from the value head, whitened;
5. several epochs of minibatch updates of the clipped surrogate plus the clipped value loss;
6. update beta (fixed, or Ziegler et al.'s adaptive controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.lm.data import minibatches
from rlhfkit.lm.forward import (
    ActorCritic,
    ResponseStats,
    ValueHead,
    actor_critic_forward,
    detached,
    response_forward,
    take,
)
from rlhfkit.lm.models import LoRAConfig
from rlhfkit.lm.sampling import generate
from rlhfkit.logging import (
    get_logger,
)
from rlhfkit.ops.advantages import gae
from rlhfkit.ops.kl import kl_penalized_rewards
from rlhfkit.ops.logprobs import masked_mean
from rlhfkit.ops.losses import ppo_clip, value_loss
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import accelerator_for
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
from rlhfkit.types import PPOBatch

log = get_logger(__name__)


@dataclass
class PPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference policy")
    reward_model: str | None = F(None, "reward model folder from `rlhfkit rm` (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed")
    rollout: RolloutConfig = F(RolloutConfig(), "sampling (batch_prompts is the global batch, all processes)")
    kl: KLConfig = F(KLConfig(), "the KL penalty to the reference policy")
    iterations: int = F(60, "rollout batches to collect and train on")
    ppo_epochs: int = F(4, "passes over each rollout batch")
    minibatch: int = F(16, "samples per optimizer step (global, all processes)")
    lr: float = F(1e-4, "Adam learning rate (policy and value head)")
    clip: float = F(0.2, "PPO ratio clip epsilon")
    value_clip: float = F(0.2, "value clipping range (0 disables)")
    vf_coef: float = F(0.1, "weight of the value loss (the value head shares the policy's backbone)")
    gamma: float = F(1.0, "discount")
    lam: float = F(0.95, "GAE lambda")
    whiten_advantages: bool = F(True, "normalize advantages per batch")
    normalize_reward: bool = F(True, "scale scores to mean 0, std 1 on the first (SFT) batch")
    grad_clip: float = F(1.0, "max gradient norm")
    checkpoint_every: int = F(20, "iterations between checkpoints (0: only the final model)")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters on the policy (off by default); the reference is then the "
                                       "policy with its adapter disabled, and final/ holds the merged model")
    mixed_precision: str = F("fp32", "autocast for sampling, scoring and training: fp32 (none), bf16 or fp16 (bf16 on GPUs)")
    gradient_checkpointing: bool = F(False, "recompute the policy's activations in the backward pass: less memory")


def _single_step(cfg: PPOConfig) -> bool:
    return cfg.ppo_epochs == 1 and cfg.minibatch >= cfg.rollout.batch_prompts


def ppo_update(s: Setup, ac: torch.nn.Module, opt: Any, batch: PPOBatch, cfg: PPOConfig, it: int,
               first: ResponseStats | None = None) -> dict[str, float]:
    """Several epochs of clipped-surrogate minibatch steps on one rollout batch.

    `first`: the whole rollout's forward, already run with gradients (one epoch, one minibatch).
    In a distributed run the minibatches are drawn from the global batch; each process steps on
    its rows, its token-mean loss weighted by W * (its tokens / the minibatch's tokens), so DDP's
    gradient average is the global minibatch's token-mean gradient (a process with no rows runs
    one row at weight 0 so the collectives still line up)."""
    rollout, mask = batch.rollout, batch.rollout.response_mask.float()  # (b, R)
    d, stats = s.dist, {}
    for epoch in range(cfg.ppo_epochs):
        for global_rows in minibatches(cfg.rollout.batch_prompts, cfg.minibatch, cfg.seed + it, epoch):
            idx = d.local_rows(global_rows)
            rows = idx or [0]
            i = torch.tensor(rows, device=mask.device)
            if first is not None:  # `first` covers every row: its forward (with grad) is this step's
                new = ResponseStats(first.logp[i], first.entropy[i], first.values[i])
            else:
                new = actor_critic_forward(ac, take(rollout, rows), with_entropy=True)
            pg = ppo_clip(new.logp, batch.old_logp[i], batch.advantages[i], mask[i], cfg.clip)
            vl = value_loss(new.values, batch.old_values[i], batch.returns[i], mask[i], cfg.value_clip or None)
            tokens = mask[i].sum() if idx else mask.new_zeros(())  # what the token mean divides by, here
            loss = (pg.loss + cfg.vf_coef * vl.loss) * d.share_weight(tokens)
            d.backward(opt, loss, cfg.grad_clip, ac)
            for k, v in {**pg.metrics, **vl.metrics, "policy_loss": pg.loss.item(), "value_loss": vl.loss.item(),
                         "entropy": masked_mean(new.entropy.detach(), mask[i]).item()}.items():
                stats.setdefault(k, []).append(v)
    return d.step_metrics(stats, "ppo", len(rollout.prompts))


def run(cfg: PPOConfig) -> dict:
    seed_everything(cfg.seed)
    acc = accelerator_for(cfg.device, cfg.mixed_precision)
    run_dir = RunDir.create(cfg.out or "runs/ppo", cfg)
    s = setup(cfg.policy, reward_specs(cfg.rewards, cfg.reward_model), cfg.rollout, cfg.seed, "ppo",
              cfg.lora, acc)
    policy, tok = s.policy, s.tokenizer
    no_dropout(policy, cfg.gradient_checkpointing)
    value_head = ValueHead(policy.config.hidden_size).to(acc.device)
    ac = ActorCritic(policy, value_head)
    opt = torch.optim.Adam([p for p in ac.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-5)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    B, W = cfg.rollout.batch_prompts, s.dist.world
    sampler = rollout_sampler(cfg.rollout.backend, cfg.policy, policy, tok, cfg.rollout.max_new_tokens, B,
                              cfg.seed, W)
    accounting = [
        ("processes", W), ("prompts per rollout batch (global)", B), ("prompts per process", per_process(B, W)),
        ("samples per rollout batch", B), ("response tokens per rollout batch (max)", B * cfg.rollout.max_new_tokens),
        ("samples per minibatch / optimizer step (global)", cfg.minibatch),
        ("optimizer steps per rollout batch", cfg.ppo_epochs * -(-B // cfg.minibatch)),
        ("rollout batches", cfg.iterations), ("total samples", B * cfg.iterations),
    ]

    def step(it: int, opt: Any) -> dict[str, float]:
        return ppo_iteration(s, policy, tok, value_head, opt, kl_ctl, norm, cfg, it, sampler)

    return drive(cfg, s, acc, run_dir, "ppo", ac, opt, kl_ctl, norm, step, accounting, {"value_head": value_head})


def ppo_iteration(s: Setup, policy, tok, value_head: ValueHead, opt, kl_ctl, norm: RewardNormalizer,
                  cfg: PPOConfig, it: int, sampler: VLLMSampler | None = None) -> dict[str, float]:
    """One rollout batch (this process's share of it) and the PPO epochs on it."""
    rc, d = cfg.rollout, s.dist
    prompts = s.next_prompts(rc.batch_prompts)
    ac = s.train_module if s.train_module is not None else ActorCritic(policy, value_head)
    with torch.no_grad(), s.autocast():
        rollout = (generate(policy, tok, prompts, max_new_tokens=rc.max_new_tokens, temperature=rc.temperature)
                   if sampler is None else sampler(policy, tok, prompts, rc.max_new_tokens, rc.temperature))
    # With one epoch of one minibatch, the policy that sampled is the one being updated: the
    # training forward's detached values are the "old" ones, and a second forward is saved.
    first = actor_critic_forward(ac, rollout, with_entropy=True) if _single_step(cfg) else None
    with torch.no_grad(), s.autocast():
        old = response_forward(policy, rollout, value_head) if first is None else detached(first)
        ref = s.reference(rollout)
        raw, reward_parts = score_rollout(s, rollout)  # (b,)
    with torch.no_grad():
        scores = norm(raw, d.gather(raw) if norm.mean is None else None) if cfg.normalize_reward else raw
        mask = rollout.response_mask.float()  # (b, R)
        rewards, kl = kl_penalized_rewards(scores, old.logp, ref.logp, mask, kl_ctl.value, cfg.kl.estimator)
        adv, returns = gae(rewards, old.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = d.whiten(adv, mask)
    m = ppo_update(s, ac, opt, PPOBatch(rollout, old.logp, old.values, adv, returns), cfg, it, first)
    seq_kl = d.mean_metrics({"kl": kl.sum(-1).mean().item()}, len(prompts))["kl"]
    kl_ctl.update(seq_kl, rc.batch_prompts)
    local = {"rollout/score": raw.mean().item(), "rollout/length": mask.sum(-1).mean().item(),
             "rollout/reward": (scores - kl_ctl.value * kl.sum(-1)).mean().item(),
             **reward_parts, **gold_metrics(s, raw, rollout.prompts, rollout.responses)}
    m.update({"rollout/kl": seq_kl, "rollout/beta": kl_ctl.value, **d.mean_metrics(local, len(prompts))})
    return m
