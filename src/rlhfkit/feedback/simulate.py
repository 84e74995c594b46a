"""`rlhfkit label-sim`: simulated labelers judge sampled completions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records, write_records
from rlhfkit.feedback.labelers import LabelerPool, agreement_with_gold, inter_labeler_agreement
from rlhfkit.feedback.records import Comparison, Completions, expand_to_comparisons
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.gold import GoldScorer

log = get_logger(__name__)


@dataclass
class LabelSimConfig(RunConfig):
    samples: str | None = F(None, "completions JSONL from `rlhfkit sample`")
    kind: Literal["ranking", "pairwise", "rating"] = F("ranking", "what the labelers give")
    agreement_items: int = F(200, "items every labeler judges pairwise, for agreement statistics only")
    output: str | None = F(None, "labels JSONL to write; default <out>/labels.jsonl")


def run_label_sim(cfg: LabelSimConfig) -> dict:
    if cfg.samples is None:
        raise UserError("label-sim: give the completions with --samples FILE")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/label-sim", cfg)
    items = read_records(cfg.samples, expect=Completions)
    need = 1 if cfg.kind == "rating" else 2
    short = [i for i, c in enumerate(items) if len(c.responses) < need]  # type: ignore[union-attr]
    if short:
        raise UserError(f"{cfg.samples}: item {short[0] + 1} has fewer than {need} responses for {cfg.kind} labels")
    gold = GoldScorer()
    pool = LabelerPool(seed=cfg.seed)
    if cfg.kind == "ranking":
        labels = pool.rank_all(items, gold)  # type: ignore[arg-type]
    elif cfg.kind == "pairwise":
        labels = pool.compare_all(items, gold)  # type: ignore[arg-type]
    else:
        labels = pool.rate_all(items, gold)  # type: ignore[arg-type]
    output = Path(cfg.output) if cfg.output else run_dir.path / "labels.jsonl"
    write_records(output, labels)
    # Agreement: every labeler judges the first pair of the same items.
    rng = random.Random(cfg.seed + 1)
    shared = [c for c in items[: cfg.agreement_items] if len(c.responses) >= 2]  # type: ignore[union-attr]
    per_labeler: dict[str, list[Comparison]] = {}
    for lab in pool.labelers:
        per_labeler[lab.name] = [lab.compare(c.prompt, c.responses[0], c.responses[1], gold(c.prompt, c.responses[0]),
                                             gold(c.prompt, c.responses[1]), rng) for c in shared]  # type: ignore[union-attr]
    pairs = expand_to_comparisons(labels) if cfg.kind != "rating" else []
    summary = {
        "labels": str(output), "records": len(labels), "kind": cfg.kind,
        "gold_agreement": agreement_with_gold(pairs, gold) if pairs else None,
        "gold_agreement_shared": agreement_with_gold([c for cs in per_labeler.values() for c in cs], gold),
        "inter_labeler_agreement": inter_labeler_agreement(per_labeler),
    }
    run_dir.write_summary(summary)
    log.info("label-sim: %d %s labels; labeler agreement with gold %s", len(labels), cfg.kind,
             summary["gold_agreement_shared"])
    return summary
