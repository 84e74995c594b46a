"""`rlhfkit sample` and `rlhfkit label-sim`: the completions and the simulated judgments a reward
model learns from. Both take the task (`--task`, `tasks.base.load_task`): `sample` draws its
prompts, `label-sim` hands its gold scorer to the simulated labelers (`feedback/labelers.py`),
so neither `lm/` nor `feedback/` needs to know any task."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records, write_records
from rlhfkit.feedback.labelers import (
    LabelerPool,
    agreement_with_gold,
    inter_labeler_agreement,
)
from rlhfkit.feedback.records import (
    Comparison,
    Completions,
    expand_to_comparisons,
    prompt_text,
)
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import gold_of, load_task, task_prompts

log = get_logger(__name__)


@dataclass
class SampleConfig(RunConfig):
    policy: str | None = F(None, "policy folder to sample from")
    task: str = F("reviews", "the task whose prompts to sample: reviews (embedded), module:attribute, or a prompts file")
    prompts: str | None = F(None, "prompts file (.txt one per line, or JSONL with 'prompt') instead of the task's")
    n_prompts: int = F(1600, "task prompts to draw when no file is given")
    split: str = F("rm", "which of the task's prompt streams: train, rm, rl or eval")
    task_seed: int = F(0, "seed of the embedded task's generator")
    k: int = F(4, "responses per prompt")
    max_new_tokens: int = F(40, "max response tokens")
    temperature: float = F(1.0, "sampling temperature")
    top_k: int = F(0, "top-k filter (0: off)")
    batch_size: int = F(128, "sequences per generate call")
    output: str | None = F(None, "JSONL to write; default <out>/samples.jsonl")


def run_sample(cfg: SampleConfig) -> dict:
    from rlhfkit.lm.models import load_policy  # torch: only when sampling
    from rlhfkit.lm.sampling import sample_completions

    if cfg.policy is None:
        raise UserError("sample: give the policy with --policy PATH")
    seed_everything(cfg.seed)
    prompts = task_prompts(load_task(cfg.task, cfg.task_seed), cfg.n_prompts, cfg.split, cfg.prompts)
    run_dir = RunDir.create(cfg.out or "runs/sample", cfg)
    model, tok = load_policy(cfg.policy)
    t0 = time.time()
    items = sample_completions(model, tok, prompts, cfg.k, cfg.batch_size, policy_name=cfg.policy,
                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k)
    output = Path(cfg.output) if cfg.output else run_dir.path / "samples.jsonl"
    write_records(output, items)
    summary = {"samples": str(output), "prompts": len(items), "k": cfg.k, "wall_s": time.time() - t0}
    run_dir.write_summary(summary)
    return summary


@dataclass
class LabelSimConfig(RunConfig):
    samples: str | None = F(None, "completions JSONL from `rlhfkit sample`")
    task: str = F("reviews", "the task whose gold scorer the simulated labelers share: reviews or module:attribute")
    kind: Literal["ranking", "pairwise", "rating"] = F("ranking", "what the labelers give")
    agreement_items: int = F(200, "items every labeler judges pairwise, for agreement statistics only")
    output: str | None = F(None, "labels JSONL to write; default <out>/labels.jsonl")


def run_label_sim(cfg: LabelSimConfig) -> dict:
    if cfg.samples is None:
        raise UserError("label-sim: give the completions with --samples FILE")
    task = load_task(cfg.task)
    scorer = gold_of(task)
    if scorer is None:
        raise UserError(f"label-sim: task {task.name} has no gold scorer for the simulated labelers to share")
    gold = scorer if callable(scorer) else lambda p, r: scorer.batch([p], [r])[0]  # (prompt, response) -> float
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/label-sim", cfg)
    items = read_records(cfg.samples, expect=Completions)
    need = 1 if cfg.kind == "rating" else 2
    short = [i for i, c in enumerate(items) if len(c.responses) < need]  # type: ignore[union-attr]
    if short:
        raise UserError(f"{cfg.samples}: item {short[0] + 1} has fewer than {need} responses for {cfg.kind} labels")
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
        per_labeler[lab.name] = [lab.compare(c.prompt, c.responses[0], c.responses[1],  # type: ignore[union-attr]
                                             gold(prompt_text(c.prompt), c.responses[0]),  # type: ignore[union-attr]
                                             gold(prompt_text(c.prompt), c.responses[1]), rng)  # type: ignore[union-attr]
                                 for c in shared]
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


def run_convert_gguf(ns: object) -> Path:
    """`rlhfkit convert-gguf FILE --out DIR`: a GGUF model (FILE may be `smollm2`) written once as a plain
    Hugging Face folder, which later runs load in seconds instead of dequantizing the file again."""
    import sys

    from rlhfkit.lm.gguf import convert_gguf

    out = getattr(ns, "flag__out", None)
    if not out:
        raise UserError("convert-gguf: give the folder to write with --out DIR")
    path = convert_gguf(getattr(ns, "file"), out)  # logs the folder and the parameter count
    sys.stdout.write(f"{path}\n")
    return path
