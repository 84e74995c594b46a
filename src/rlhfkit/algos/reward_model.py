"""Reward model: the SFT backbone with a scalar head, fitted to comparisons
(InstructGPT step 2, Ouyang et al. 2022, sec. 3.5; Stiennon et al. 2020, eq. 1).

    loss = -[mu log sigmoid(r(x, y_c) - r(x, y_r)) + (1 - mu) log sigmoid(r(x, y_r) - r(x, y_c))]

with mu = 1 for a preference and 0.5 for a tie, and each pair of a K-way ranking
weighted 1/C(K, 2). The alternative "approach 1" regresses 1-7 ratings instead.

Evaluation on held-out judgments (split by prompt, so no prompt is seen in both):
pairwise accuracy of the model, the same accuracy of the task's gold scorer on the
same labels (the ceiling labeler noise allows, when the task given with `--task` has a
gold scorer and the labels came from it), and the expected calibration error of
P(chosen > rejected).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import (
    Comparison,
    Ranking,
    Rating,
    expand_to_comparisons,
    prompt_text,
    split_by_prompt,
)
from rlhfkit.lm.data import (
    EncodedPreference,
    encode_pairs,
    encode_preferences,
    pad_right,
)
from rlhfkit.lm.models import (
    LoRAConfig,
    PrefixConfig,
    merged,
    reward_model_from,
    save_model,
    with_adapters,
)
from rlhfkit.lm.scoring import scalar_scores, score  # noqa: F401  (score: re-exported)
from rlhfkit.lm.shared_prompt import can_share_prompt, collate_shared, shared_rewards
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.ops.losses import LossOutput, bradley_terry, rating_regression
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import Gold, gold_of, load_task
from rlhfkit.train.dist import is_main_process
from rlhfkit.train.supervised import OptimConfig, fit
from rlhfkit.types import batch_to

log = get_logger(__name__)


@dataclass
class RMConfig(RunConfig):
    model: str | None = F(None, "backbone to start from: the SFT policy (or any HF causal LM folder)")
    data: str | None = F(None, "comparisons, rankings or ratings (JSONL/Parquet/dataset, any supported format)")
    objective: Literal["bradley_terry", "ratings"] = F("bradley_terry", "pairwise BT loss, or regression on 1-7 ratings")
    heldout_frac: float = F(0.15, "fraction of prompts held out for evaluation")
    max_len: int = F(96, "max tokens of prompt + response")
    share_prompt: bool = F(True, "run each pair's prompt once for both responses (same loss, fewer FLOPs)")
    task: str = F("reviews", "the task whose gold scorer gives the ceiling accuracy: reviews, module:attribute, "
                             "a prompts file (no gold), or none")
    eval_batch_size: int = F(128, "sequences per forward pass in evaluation")
    optim: OptimConfig = F(OptimConfig(lr=3e-4, batch_size=32, epochs=2.0, checkpoint_every=500), "optimizer")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters on the backbone (off by default; the head trains whole)")
    prefix: PrefixConfig = F(PrefixConfig(), "prefix tuning (off by default; the head trains whole); final/ holds "
                                             "the prefix and base/")


def expected_calibration_error(p_chosen: torch.Tensor, bins: int = 10) -> float:
    """ECE of P(label's chosen > rejected): |accuracy - confidence| averaged over confidence bins."""
    conf = torch.maximum(p_chosen, 1 - p_chosen)
    correct = (p_chosen > 0.5).float()
    edges = torch.linspace(0.5, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if sel.any():
            ece += sel.float().mean().item() * abs(correct[sel].mean().item() - conf[sel].mean().item())
    return ece


def evaluate(model, tok, pairs: Sequence[Comparison], max_len: int, gold: Gold | None,
             batch_size: int = 128) -> dict[str, float | int | None]:
    decided = [c for c in pairs if not c.tie]
    if not decided:
        return {"heldout_accuracy": None, "gold_accuracy": None, "ece": None, "n_heldout": 0}
    prompts = [c.prompt for c in decided]
    rc = score(model, tok, prompts, [c.chosen for c in decided], max_len, batch_size)
    rr = score(model, tok, prompts, [c.rejected for c in decided], max_len, batch_size)
    p = torch.sigmoid(rc - rr)
    out: dict[str, float | int | None] = {
        "heldout_accuracy": (rc > rr).float().mean().item(),
        "ece": expected_calibration_error(p),
        "n_heldout": len(decided),
        "gold_accuracy": None,
    }
    if gold is not None:  # a gold scorer reads text: a conversation as its transcript
        texts = [prompt_text(x) for x in prompts]
        chosen = gold.batch(texts, [c.chosen for c in decided])
        rejected = gold.batch(texts, [c.rejected for c in decided])
        g = [a - b for a, b in zip(chosen, rejected)]
        out["gold_accuracy"] = sum((x > 0) + 0.5 * (x == 0) for x in g) / len(g)
    return out


def _gold_for(cfg: RMConfig) -> Gold | None:
    """The gold scorer of the task given (`--task`); none for `--task none` or a task without one."""
    return None if cfg.task == "none" else gold_of(load_task(cfg.task))


def pair_rewards(model, batch: Sequence[EncodedPreference], pad_id: int, share_prompt: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x, y_c), r(x, y_r), (B,) each: the prompt run once for both responses
    (`lm.shared_prompt`), or both full sequences padded together in one forward."""
    dev = model.device
    if share_prompt and can_share_prompt(model) and (sb := collate_shared(batch, pad_id)) is not None:
        return shared_rewards(model, batch_to(sb, dev))
    ids, att = pad_right([e.chosen[0] for e in batch] + [e.rejected[0] for e in batch], pad_id)
    r = scalar_scores(model, ids.to(dev), att.to(dev))  # (2B,)
    return r[: len(batch)], r[len(batch):]


def bt_loss_fn(model, tok, train: list[Comparison], max_len: int, share_prompt: bool = True
               ) -> Callable[[list[int]], LossOutput]:
    """The Bradley-Terry loss of a batch of `train` indices; the pairs are tokenized once, here."""
    enc = encode_preferences(tok, train, max_len)

    def loss_fn(idx: list[int]) -> LossOutput:
        batch = [enc[i] for i in idx]
        rc, rr = pair_rewards(model, batch, tok.pad_token_id, share_prompt)
        target = torch.tensor([e.target for e in batch], device=rc.device)
        weight = torch.tensor([e.weight for e in batch], device=rc.device)
        return bradley_terry(rc, rr, target=target, weights=weight)
    return loss_fn


def ratings_loss_fn(model, tok, train: list[Rating], max_len: int) -> Callable[[list[int]], LossOutput]:
    enc = encode_pairs(tok, [r.prompt for r in train], [r.response for r in train], max_len)

    def loss_fn(idx: list[int]) -> LossOutput:
        ids, att = pad_right([enc[i][0] for i in idx], tok.pad_token_id)
        dev = model.device
        pred = scalar_scores(model, ids.to(dev), att.to(dev))  # (B,)
        return rating_regression(pred, torch.tensor([train[i].score for i in idx], dtype=torch.float32, device=dev))
    return loss_fn


def _rating_pairs(ratings: Sequence[Rating]) -> list[Comparison]:
    """Held-out pairs implied by ratings: same prompt, different scores."""
    by_prompt: dict[str, list[Rating]] = {}
    for r in ratings:
        by_prompt.setdefault(r.prompt, []).append(r)
    out = []
    for rs in by_prompt.values():
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                if a.score != b.score:
                    hi, lo = (a, b) if a.score > b.score else (b, a)
                    out.append(Comparison(a.prompt, hi.response, lo.response, labeler=a.labeler))
    return out


def run(cfg: RMConfig) -> dict:
    t0 = time.time()
    if cfg.model is None or cfg.data is None:
        raise UserError("rm: give a backbone with --model PATH and judgments with --data FILE")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/rm", cfg)
    if cfg.objective == "ratings":
        records = read_records(cfg.data, expect=Rating)
        unscored = sum(r.score is None for r in records)  # type: ignore[union-attr]
        if unscored:
            raise UserError(f"{cfg.data}: {unscored} of {len(records)} ratings have no 1-7 score (their form "
                            "has no `score` field); --objective ratings regresses the score")
    else:
        records = read_records(cfg.data, expect=(Comparison, Ranking))
    held_mask = split_by_prompt([r.prompt for r in records], cfg.heldout_frac, cfg.seed)
    train_recs = [r for r, h in zip(records, held_mask) if not h]
    held_recs = [r for r, h in zip(records, held_mask) if h]
    if not train_recs:
        raise UserError(f"{cfg.data}: no records left for training after holding out {cfg.heldout_frac:.0%} of prompts")
    model, tok = reward_model_from(cfg.model)
    model = with_adapters(model, cfg.model, "rm", cfg.lora, cfg.prefix, task="SEQ_CLS")
    if cfg.objective == "ratings":
        train, held = list(train_recs), _rating_pairs(held_recs)  # type: ignore[arg-type]
        loss_fn = ratings_loss_fn(model, tok, train, cfg.max_len)
    else:
        train, held = expand_to_comparisons(train_recs), expand_to_comparisons(held_recs)
        loss_fn = bt_loss_fn(model, tok, train, cfg.max_len, cfg.share_prompt)
    gold = _gold_for(cfg)
    log.info("rm: %d training %s, %d held-out pairs; gold scorer: %s", len(train),
             "ratings" if cfg.objective == "ratings" else "pairs", len(held), "yes" if gold else "no")
    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        steps = fit(run_dir, model, tok, len(train), loss_fn, cfg.optim, cfg.seed, logger, "rm",
                    resume=cfg.resume, device=cfg.device)
        metrics = evaluate(model, tok, held, cfg.max_len, gold, cfg.eval_batch_size)
        logger.log({f"eval/rm/{k}": v for k, v in metrics.items() if v is not None}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "train_examples": len(train), **metrics,
               "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("rm: held-out accuracy %s (gold %s), ECE %s on %s pairs", _fmt(metrics["heldout_accuracy"]),
             _fmt(metrics["gold_accuracy"]), _fmt(metrics["ece"]), metrics["n_heldout"])
    return summary


def _fmt(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)
