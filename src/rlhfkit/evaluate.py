"""Evaluation on held-out prompts, the AlpacaFarm way (Dubois et al. 2023): for each
policy, one sample per prompt, then
- mean gold score (the simulated humans' true taste),
- mean proxy score (the reward model's),
- KL(pi || pi_ref): Monte-Carlo, the mean over samples of sum_t log pi - log pi_ref
  (best-of-n: the closed form log n - (n - 1)/n),
- simulated win-rate against the reference's sample for the same prompt, judged by
  a labeler drawn from the simulated pool (a tie counts one half),
- on-topic: the fraction of responses on the prompt's subject, for a task that says
  (`task.on_topic(prompt, response)` -> bool, or None where it cannot tell; the review task:
  does the response name the item asked about),
- the task's own measures, for a task with `metrics(prompts, responses) -> dict` (the
  constraints task: IFEval's prompt-level and instruction-level accuracy with their CIs),
each with a 95% confidence interval (normal approximation over prompts). Gold score and
win-rate need the task's gold scorer; for a task without one they are None.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.labelers import LabelerPool
from rlhfkit.lm.forward import sequence_kl
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.sampling import generate
from rlhfkit.lm.scoring import RewardModel, best_of_n
from rlhfkit.logging import get_logger, progress
from rlhfkit.ops.kl import best_of_n_kl
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.stats import mean_ci
from rlhfkit.tasks.base import Task, gold_of, load_task, task_prompts

log = get_logger(__name__)


def win_rate(prompts: Sequence[str], responses: Sequence[str], ref_responses: Sequence[str],
             gold: Sequence[float], ref_gold: Sequence[float], seed: int) -> tuple[float, list[float]]:
    """Fraction of prompts where a pool labeler, judging with the gold scores of both responses,
    prefers `responses` over the reference's (ties 1/2)."""
    pool = LabelerPool(seed=seed)
    rng = random.Random(seed)
    outcomes = []
    for p, y, y_ref, g, g_ref in zip(prompts, responses, ref_responses, gold, ref_gold, strict=True):
        lab = rng.choice(pool.labelers)
        if y == y_ref:
            outcomes.append(0.5)
            continue
        c = lab.compare(p, y, y_ref, g, g_ref, rng)
        outcomes.append(0.5 if c.tie else float(c.chosen == y))
    return mean_ci(outcomes)


@torch.no_grad()
def sample_policy(model, tok, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 100,
                  ref=None) -> tuple[list[str], list[float]]:
    """One response per prompt, and its KL to `ref` (if given)."""
    responses: list[str] = []
    kls: list[float] = []
    for i in range(0, len(prompts), batch_size):
        ro = generate(model, tok, prompts[i: i + batch_size], max_new_tokens=max_new_tokens)
        responses.extend(ro.responses)
        if ref is not None:
            kls.extend(sequence_kl(model, ref, ro).tolist())
    return responses, kls


def on_topic(task: Task, prompts: Sequence[str], responses: Sequence[str]
             ) -> tuple[float | None, list[float] | None]:
    """Fraction of responses on the prompt's subject, over the prompts the task can judge
    (None when the task has no `on_topic`, or can judge none of them)."""
    judge = getattr(task, "on_topic", None)
    if judge is None:
        return None, None
    hits = [float(v) for v in (judge(p, y) for p, y in zip(prompts, responses, strict=True)) if v is not None]
    return mean_ci(hits) if hits else (None, None)


def score_responses(prompts: Sequence[str], responses: Sequence[str], ref_responses: Sequence[str],
                    ref_gold: Sequence[float] | None, rm: RewardModel, task: Task, kls: Sequence[float] | None,
                    kl_value: float | None, seed: int) -> dict:
    """One method's row; `ref_gold`: the reference responses' gold scores (None: the task has no gold)."""
    gold = gold_of(task)
    g, g_ci, w, w_ci = None, None, None, None
    if gold is not None and ref_gold is not None:
        scores = gold.batch(list(prompts), list(responses))
        g, g_ci = mean_ci(scores)
        w, w_ci = win_rate(prompts, responses, ref_responses, scores, ref_gold, seed)
    p, p_ci = mean_ci(rm(list(prompts), list(responses)).tolist())
    t, t_ci = on_topic(task, prompts, responses)
    if kls:
        k, k_ci = mean_ci(list(kls))
    else:
        k, k_ci = (kl_value or 0.0), [kl_value or 0.0, kl_value or 0.0]
    row = {"winrate_vs_sft": w, "winrate_ci": w_ci, "gold": g, "gold_ci": g_ci, "proxy": p, "proxy_ci": p_ci,
           "kl": k, "kl_ci": k_ci, "on_topic": t, "on_topic_ci": t_ci,
           "samples": [{"prompt": a, "response": b} for a, b in zip(prompts[:4], responses[:4])]}
    metrics = getattr(task, "metrics", None)  # a task's own measures (the constraints task: IFEval's accuracies)
    if metrics is not None:
        row["task_metrics"] = metrics(list(prompts), list(responses))
    return row


@dataclass
class EvalConfig(RunConfig):
    policies: list[str] = F([], "policies to evaluate, as name=PATH")
    reference: str | None = F(None, "reference policy (the SFT model): KL and win-rate are against it")
    reward_model: str | None = F(None, "reward model giving the proxy score")
    best_of: list[int] = F([], "also evaluate best-of-n sampling from the reference for these n")
    task: str = F("reviews", "the task: reviews (embedded), module:attribute, or a prompts file (no gold)")
    prompts: str | None = F(None, "held-out prompts file (overrides the task's eval prompts)")
    n_prompts: int = F(200, "eval prompts drawn from the task")
    task_seed: int = F(0, "seed of the embedded task's generator")
    max_new_tokens: int = F(48, "max response tokens")
    rm_max_len: int = F(96, "max tokens the reward model reads (prompt + response; a chat template adds its own)")


def evaluate_all(cfg: EvalConfig) -> dict[str, dict]:
    if cfg.reference is None or cfg.reward_model is None:
        raise UserError("eval: give --reference PATH (the SFT policy) and --reward-model PATH")
    seed_everything(cfg.seed)
    task = load_task(cfg.task, cfg.task_seed)
    prompts = task_prompts(task, cfg.n_prompts, "eval", cfg.prompts)
    gold = gold_of(task)
    if gold is None:
        log.info("eval: task %s has no gold scorer; gold score and win-rate are left out", task.name)
    rm = RewardModel(cfg.reward_model, cfg.rm_max_len)
    ref, tok = load_policy(cfg.reference)
    ref.eval()
    ref_responses, _ = sample_policy(ref, tok, prompts, cfg.max_new_tokens)
    ref_gold = gold.batch(list(prompts), ref_responses) if gold is not None else None
    # The reference's own row: a second, independent sample judged against the first.
    sft_again, sft_kl = sample_policy(ref, tok, prompts, cfg.max_new_tokens, ref=ref)
    results = {"sft": score_responses(prompts, sft_again, ref_responses, ref_gold, rm, task, sft_kl, None, cfg.seed)}
    for spec in progress(cfg.policies, desc="evaluating policies"):
        name, _, path = spec.partition("=")
        if not path:
            raise UserError(f"eval: policies are given as name=PATH, got {spec!r}")
        model, _ = load_policy(path)
        model.eval()
        resp, kls = sample_policy(model, tok, prompts, cfg.max_new_tokens, ref=ref)
        results[name] = score_responses(prompts, resp, ref_responses, ref_gold, rm, task, kls, None, cfg.seed)
    for n in cfg.best_of:
        best, _, _ = best_of_n(ref, tok, rm, prompts, n, max_new_tokens=cfg.max_new_tokens)
        results[f"best_of_{n}"] = score_responses(prompts, best, ref_responses, ref_gold, rm, task, None,
                                                  best_of_n_kl(n), cfg.seed)
    return results


def run(cfg: EvalConfig) -> dict:
    t0 = time.time()
    run_dir = RunDir.create(cfg.out or "runs/eval", cfg)
    methods = evaluate_all(cfg)
    from rlhfkit.report import methods_table

    (run_dir.path / "report.md").write_text("# Evaluation\n\n" + methods_table(methods) + "\n")
    summary = {"methods": methods, "wall_s": time.time() - t0}
    run_dir.write_summary(summary)
    log.info("eval:\n%s", methods_table(methods))
    return summary
