"""Best-of-n (rejection sampling): draw n responses, keep the one the reward model
scores highest (Stiennon et al. 2020; Nakano et al. 2021). No training; its KL to
the sampling policy is at most log n - (n - 1) / n (Hilton & Gao's closed form)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.models import load_policy
from rlhfkit.logging import get_logger
from rlhfkit.ops.kl import best_of_n_kl
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import load_task, task_prompts
from rlhfkit.train.dist import Dist, accelerator_for
from rlhfkit.train.rewards import Rewards, reward_specs
from rlhfkit.train.rollouts import best_of_n_gathered

log = get_logger(__name__)


@dataclass
class BestOfNConfig(RunConfig):
    policy: str | None = F(None, "policy to sample from")
    reward_model: str | None = F(None, "reward model that picks the best (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed")
    task: str = F("reviews", "the task: reviews (embedded), module:attribute, or a prompts file")
    n: int = F(16, "samples per prompt")
    prompts: str | None = F(None, "prompts file; None: the embedded task's eval prompts")
    n_prompts: int = F(200, "embedded prompts to draw")
    task_seed: int = F(0, "seed of the embedded task's generator")
    max_new_tokens: int = F(48, "max response tokens")
    output: str | None = F(None, "JSONL of the chosen (prompt, response) pairs; default <out>/best.jsonl")


def run(cfg: BestOfNConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or not (cfg.reward_model or cfg.rewards):
        raise UserError("best-of-n: give --policy PATH and --reward-model PATH (or --reward rm:PATH / fn:module:function)")
    seed_everything(cfg.seed)
    dist = Dist(accelerator_for(cfg.device))  # under `accelerate launch`, each process samples its share
    dist.reseed(cfg.seed)
    path = Path(cfg.out or "runs/best-of-n")
    run_dir = RunDir.create(path, cfg) if dist.is_main else RunDir(path)
    policy, tok = load_policy(cfg.policy)
    reward = Rewards(reward_specs(cfg.rewards, cfg.reward_model)).to(dist.acc.device)
    policy.to(dist.acc.device)
    all_prompts = task_prompts(load_task(cfg.task, cfg.task_seed), cfg.n_prompts, "eval", cfg.prompts)
    prompts, best, best_scores, all_scores = best_of_n_gathered(policy, tok, reward, dist.shard(all_prompts), cfg.n,
                                                                dist, max_new_tokens=cfg.max_new_tokens)
    out = cfg.output or str(run_dir.path / "best.jsonl")
    # a demonstration's response may not be blank: an empty best response is left out and counted
    chosen = [Demonstration(p, r) for p, r in zip(prompts, best) if r.strip()]
    summary = {"output": out, "n": cfg.n, "prompts": len(prompts), "empty": len(prompts) - len(chosen),
               "best_score": best_scores.mean().item(), "mean_score": all_scores.mean().item(),
               "kl_bound": best_of_n_kl(cfg.n), "wall_s": time.time() - t0}
    if dist.is_main:
        write_records(out, chosen)
        run_dir.write_summary(summary)
    log.info("best-of-%d: mean reward-model score %.3f (single sample %.3f)", cfg.n, summary["best_score"],
             summary["mean_score"])
    return summary
