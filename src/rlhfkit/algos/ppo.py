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

import time
from dataclasses import dataclass

import torch

from rlhfkit.algos.online import (
    FailureSigns,
    KLConfig,
    RolloutConfig,
    batch_accounting,
    checkpoint,
    gold_metrics,
    kl_controller,
    resume,
    setup,
)
from rlhfkit.algos.rollout import RewardNormalizer, ValueHead, response_forward, take
from rlhfkit.config import F, RunConfig
from rlhfkit.lm.data import minibatches
from rlhfkit.lm.models import save_model
from rlhfkit.lm.sampling import generate
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.ops.advantages import gae, whiten
from rlhfkit.ops.kl import kl_penalized_rewards
from rlhfkit.ops.logprobs import masked_mean
from rlhfkit.ops.losses import ppo_clip, value_loss
from rlhfkit.runtime import RunDir, seed_everything

log = get_logger(__name__)


@dataclass
class PPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference policy")
    reward_model: str | None = F(None, "reward model folder (from `rlhfkit rm`)")
    rollout: RolloutConfig = F(RolloutConfig(), "sampling")
    kl: KLConfig = F(KLConfig(), "the KL penalty to the reference policy")
    iterations: int = F(60, "rollout batches to collect and train on")
    ppo_epochs: int = F(4, "passes over each rollout batch")
    minibatch: int = F(16, "samples per optimizer step")
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


def ppo_update(policy, value_head, opt, rollout, old, adv, returns, cfg: PPOConfig, seed: int, it: int
               ) -> dict[str, float]:
    """Several epochs of clipped-surrogate minibatch steps on one rollout batch."""
    mask = rollout.response_mask.float()
    stats: dict[str, list[float]] = {}
    params = list(policy.parameters()) + list(value_head.parameters())
    for epoch in range(cfg.ppo_epochs):
        for idx in minibatches(len(rollout.prompts), cfg.minibatch, seed + it, epoch):
            sub = take(rollout, idx)
            new = response_forward(policy, sub, value_head, with_entropy=True)
            i = torch.tensor(idx)
            pg = ppo_clip(new.logp, old.logp[i], adv[i], mask[i], cfg.clip)
            vl = value_loss(new.values, old.values[i], returns[i], mask[i], cfg.value_clip or None)
            loss = pg.loss + cfg.vf_coef * vl.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            for k, v in {**pg.metrics, **vl.metrics, "policy_loss": pg.loss.item(), "value_loss": vl.loss.item(),
                         "entropy": masked_mean(new.entropy.detach(), mask[i]).item()}.items():
                stats.setdefault(k, []).append(v)
    out = {f"ppo/{k}": sum(v) / len(v) for k, v in stats.items()}
    out["ppo/ratio_max"] = max(stats["ratio_max"])
    return out


def run(cfg: PPOConfig) -> dict:
    t0 = time.time()
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/ppo", cfg)
    s = setup(cfg.policy, cfg.reward_model, cfg.rollout, cfg.seed, "ppo")
    policy, tok = s.policy, s.tokenizer
    policy.eval()  # dropout off: the old and new log-probs must come from the same function
    value_head = ValueHead(policy.config.hidden_size)
    opt = torch.optim.Adam(list(policy.parameters()) + list(value_head.parameters()), lr=cfg.lr, eps=1e-5)
    kl_ctl, norm, signs = kl_controller(cfg.kl), RewardNormalizer(), FailureSigns(cfg.rollout.max_new_tokens)
    heads = {"value_head": value_head}
    start = resume(run_dir, s, heads, opt, kl_ctl, norm) if cfg.resume else 0
    B = cfg.rollout.batch_prompts
    log.info(batch_accounting([
        ("prompts per rollout batch", B), ("samples per rollout batch", B),
        ("response tokens per rollout batch (max)", B * cfg.rollout.max_new_tokens),
        ("samples per minibatch / optimizer step", cfg.minibatch),
        ("optimizer steps per rollout batch", cfg.ppo_epochs * -(-B // cfg.minibatch)),
        ("rollout batches", cfg.iterations), ("total samples", B * cfg.iterations),
    ]))
    history = []
    with MetricsLogger(run_dir.path, cfg.log, resume=cfg.resume) as logger:
        for it in progress(range(start, cfg.iterations), total=cfg.iterations, desc="ppo"):
            m = ppo_iteration(s, policy, tok, value_head, opt, kl_ctl, norm, cfg, it)
            signs.check(it, m)
            logger.log(m, it + 1)
            history.append(m)
            if cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations:
                checkpoint(run_dir, it + 1, s, heads, opt, kl_ctl, norm)
    save_model(policy, tok, run_dir.final)
    value_head.save_pretrained(run_dir.path / "value_head")
    summary = summarize(history, "ppo", run_dir, t0, kl_ctl.value)
    run_dir.write_summary(summary)
    return summary


def ppo_iteration(s, policy, tok, value_head, opt, kl_ctl, norm, cfg: PPOConfig, it: int) -> dict[str, float]:
    rc = cfg.rollout
    prompts = s.prompts.next(rc.batch_prompts)
    with torch.no_grad():
        rollout = generate(policy, tok, prompts, max_new_tokens=rc.max_new_tokens, temperature=rc.temperature)
        old = response_forward(policy, rollout, value_head)
        ref = response_forward(s.ref, rollout)
        raw = s.reward(list(rollout.prompts), list(rollout.responses))  # (B,)
        scores = norm(raw) if cfg.normalize_reward else raw
        mask = rollout.response_mask.float()
        rewards, kl = kl_penalized_rewards(scores, old.logp, ref.logp, mask, kl_ctl.value, cfg.kl.estimator)
        adv, returns = gae(rewards, old.values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = whiten(adv, mask)
    m = ppo_update(policy, value_head, opt, rollout, old, adv, returns, cfg, cfg.seed, it)
    seq_kl = kl.sum(-1).mean().item()
    kl_ctl.update(seq_kl, rc.batch_prompts)
    m.update({"rollout/score": raw.mean().item(), "rollout/kl": seq_kl, "rollout/beta": kl_ctl.value,
              "rollout/length": mask.sum(-1).mean().item(),
              "rollout/reward": (scores - kl_ctl.value * kl.sum(-1)).mean().item()})
    m.update(gold_metrics(s, raw, rollout.prompts, rollout.responses))
    return m


def summarize(history: list[dict[str, float]], name: str, run_dir: RunDir, t0: float, beta: float) -> dict:
    last = history[-5:] if history else []

    def avg(k: str) -> float | None:
        vals = [h[k] for h in last if k in h]
        return sum(vals) / len(vals) if vals else None

    summary = {"final": str(run_dir.final), "iterations": len(history), "final_beta": beta,
               "score": avg("rollout/score"), "kl": avg("rollout/kl"), "gold": avg("rollout/gold"),
               "length": avg("rollout/length"), "wall_s": time.time() - t0}
    log.info("%s: last-5 mean score %s, KL %s, gold %s", name, summary["score"], summary["kl"], summary["gold"])
    return summary
