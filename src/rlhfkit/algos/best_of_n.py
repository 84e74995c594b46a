"""Best-of-n (rejection sampling): draw n responses, keep the one the reward model
scores highest (Stiennon et al. 2020; Nakano et al. 2021). No training; its KL to
the sampling policy is at most log n - (n - 1) / n (Hilton & Gao's closed form)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from rlhfkit.algos.rollout import RewardModel
from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.sampling import load_prompts, sample_completions
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir, seed_everything

log = get_logger(__name__)


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n, for a continuous reward without ties."""
    return math.log(n) - (n - 1) / n


def best_of_n(policy, tok, reward: RewardModel, prompts: Sequence[str], n: int, batch_size: int = 128,
              **gen_kwargs) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """-> (best response per prompt, its score (P,), all scores (P, n))."""
    items = sample_completions(policy, tok, prompts, n, batch_size, desc=f"best-of-{n} sampling", **gen_kwargs)
    flat_p = [c.prompt for c in items for _ in c.responses]
    flat_r = [r for c in items for r in c.responses]
    scores = reward(flat_p, flat_r).view(len(items), n)  # (P, n)
    best = scores.argmax(1)
    return [items[i].responses[int(b)] for i, b in enumerate(best)], scores.max(1).values, scores


@dataclass
class BestOfNConfig(RunConfig):
    policy: str | None = F(None, "policy to sample from")
    reward_model: str | None = F(None, "reward model that picks the best")
    n: int = F(16, "samples per prompt")
    prompts: str | None = F(None, "prompts file; None: the embedded task's eval prompts")
    n_prompts: int = F(200, "embedded prompts to draw")
    task_seed: int = F(0, "seed of the embedded task's generator")
    max_new_tokens: int = F(48, "max response tokens")
    output: str | None = F(None, "JSONL of the chosen (prompt, response) pairs; default <out>/best.jsonl")


def run(cfg: BestOfNConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or cfg.reward_model is None:
        raise UserError("best-of-n: give --policy PATH and --reward-model PATH")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/best-of-n", cfg)
    policy, tok = load_policy(cfg.policy)
    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.task_seed, "eval")
    best, best_scores, all_scores = best_of_n(policy, tok, RewardModel(cfg.reward_model), prompts, cfg.n,
                                              max_new_tokens=cfg.max_new_tokens)
    out = cfg.output or str(run_dir.path / "best.jsonl")
    write_records(out, [Demonstration(p, r if r.strip() else " ") for p, r in zip(prompts, best)])
    summary = {"output": out, "n": cfg.n, "prompts": len(prompts), "best_score": best_scores.mean().item(),
               "mean_score": all_scores.mean().item(), "kl_bound": best_of_n_kl(cfg.n), "wall_s": time.time() - t0}
    run_dir.write_summary(summary)
    log.info("best-of-%d: mean reward-model score %.3f (single sample %.3f)", cfg.n, summary["best_score"],
             summary["mean_score"])
    return summary
