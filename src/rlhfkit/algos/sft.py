"""Supervised fine-tuning on demonstrations: the NLL of response tokens only
(InstructGPT step 1, Ouyang et al. 2022, sec. 3.5)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.data import (
    collate_sft,
    encode_demonstrations,
    sft_batch,
    token_logprobs,
)
from rlhfkit.lm.models import (
    LoRAConfig,
    PrefixConfig,
    load_policy,
    merged,
    save_model,
    with_adapters,
)
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.ops.losses import sft_nll
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import demonstrations_of, load_task
from rlhfkit.train.dist import is_main_process
from rlhfkit.train.supervised import OptimConfig, fit
from rlhfkit.types import batch_to

log = get_logger(__name__)


@dataclass
class SFTConfig(RunConfig):
    model: str | None = F(None, "policy to fine-tune (a save_pretrained folder, e.g. a pretrain run's final/)")
    data: str | None = F(None, "demonstrations (JSONL/Parquet/dataset); None uses the embedded task's")
    n_demos: int = F(3000, "embedded demonstrations to generate when no data is given")
    task: str = F("reviews", "the task giving the data when none is given: reviews (embedded) or module:attribute")
    task_seed: int = F(0, "seed of the embedded task's generator")
    heldout_frac: float = F(0.05, "fraction of demonstrations held out for the final NLL")
    max_len: int = F(96, "max tokens of prompt + response")
    optim: OptimConfig = F(OptimConfig(lr=5e-4, batch_size=32, epochs=2.0), "optimizer and schedule")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters (off by default); final/ holds the merged model")
    prefix: PrefixConfig = F(PrefixConfig(), "prefix tuning (off by default); final/ holds the prefix and base/")


def load_demonstrations(cfg: SFTConfig) -> list[Demonstration]:
    if cfg.data is None:
        return demonstrations_of(load_task(cfg.task, cfg.task_seed), cfg.n_demos)
    return read_records(cfg.data, expect=Demonstration)  # type: ignore[return-value]


def demo_nll(model, tok, demos: list[Demonstration], max_len: int, batch_size: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(demos), batch_size):
            b = batch_to(sft_batch(tok, demos[i: i + batch_size], max_len), model.device)
            lp = token_logprobs(model, b.input_ids, b.attention_mask)
            m = b.loss_mask[:, 1:].to(lp.dtype)
            total += -(lp * m).sum().item()
            count += m.sum().item()
    model.train()
    return total / max(count, 1.0)


def run(cfg: SFTConfig) -> dict:
    t0 = time.time()
    if cfg.model is None:
        raise UserError("sft: give the policy to fine-tune with --model PATH")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/sft", cfg)
    model, tok = load_policy(cfg.model)
    model = with_adapters(model, cfg.model, "sft", cfg.lora, cfg.prefix)
    demos = load_demonstrations(cfg)
    n_held = int(len(demos) * cfg.heldout_frac)
    held, train = demos[:n_held], demos[n_held:]

    enc = encode_demonstrations(tok, train, cfg.max_len)

    def loss_fn(idx: list[int]):
        b = batch_to(collate_sft([enc[i] for i in idx], tok.pad_token_id), model.device)
        lp = token_logprobs(model, b.input_ids, b.attention_mask)  # (B, T-1)
        return sft_nll(lp, b.loss_mask[:, 1:])

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        before = demo_nll(model, tok, held, cfg.max_len) if held else float("nan")
        steps = fit(run_dir, model, tok, len(train), loss_fn, cfg.optim, cfg.seed, logger, "sft",
                    resume=cfg.resume, device=cfg.device)
        after = demo_nll(model, tok, held, cfg.max_len) if held else float("nan")
        logger.log({"eval/sft/nll": after}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "demonstrations": len(train),
               "heldout_nll_before": before, "heldout_nll": after, "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("sft: held-out response NLL %.3f -> %.3f; model in %s", before, after, run_dir.final)
    return summary
