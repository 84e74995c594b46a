"""Best-of-n (rejection sampling): draw n responses, keep the one the reward model
scores highest (Stiennon et al. 2020; Nakano et al. 2021). No training; its KL to
the sampling policy is at most log n - (n - 1) / n (Hilton & Gao's closed form)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlhfkit.algos.loop import accelerator_for
from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.sampling import sample_completions
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import load_task, task_prompts
from rlhfkit.train.online import Dist
from rlhfkit.train.rewards import Rewards, reward_specs

log = get_logger(__name__)


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n, for a continuous reward without ties."""
    return math.log(n) - (n - 1) / n


def best_of_n(policy, tok, reward: Callable[[Sequence[str], Sequence[str]], torch.Tensor], prompts: Sequence[str], n: int, batch_size: int = 128,
              **gen_kwargs) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """-> (best response per prompt, its score (P,), all scores (P, n))."""
    if not prompts:  # a process whose share of a small global batch is empty
        return [], torch.zeros(0), torch.zeros(0, n)
    items = sample_completions(policy, tok, prompts, n, batch_size, desc=f"best-of-{n} sampling", **gen_kwargs)
    flat_p = [c.prompt for c in items for _ in c.responses]
    flat_r = [r for c in items for r in c.responses]
    scores = reward(flat_p, flat_r).view(len(items), n)  # (P, n)
    best = scores.argmax(1)
    return [items[i].responses[int(b)] for i, b in enumerate(best)], scores.max(1).values, scores


def interleave(parts: list[list[Any]]) -> list[Any]:
    """Undo `Dist.shard`: process r held items r, r + W, ...; back to one list in the global order."""
    world = len(parts)
    out: list[Any] = [None] * sum(len(p) for p in parts)
    for rank, part in enumerate(parts):
        out[rank::world] = part
    return out


def best_of_n_gathered(policy, tok, reward: Callable[[Sequence[str], Sequence[str]], torch.Tensor], mine: Sequence[str], n: int, dist: Dist,
                       **gen_kwargs) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
    """`best_of_n` of this process's share `mine` (`Dist.shard` of a global batch), gathered:
    every process gets the whole batch back in its order -> (prompts, best responses, their
    scores (P,), all scores (P, n)). With one process, `best_of_n` of `mine`."""
    best, top, scores = best_of_n(policy, tok, reward, mine, n, **gen_kwargs)
    if dist.world == 1:
        return list(mine), best, top, scores
    rows = interleave(dist.gather_objects(list(zip(mine, best, top.tolist(), scores.tolist()))))
    return ([p for p, *_ in rows], [b for _, b, *_ in rows], torch.tensor([t for *_, t, _ in rows]),
            torch.tensor([s for *_, s in rows]).view(len(rows), n))  # (P,), (P, n)


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
