"""Supervised fine-tuning on demonstrations: the NLL of response tokens only
(InstructGPT step 1, Ouyang et al. 2022, sec. 3.5). A chat model's demonstrations go through
its chat template, and the loss covers every assistant turn of a conversation (`lm/chat.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import FormatError, line_of, read_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.chat import MaskError
from rlhfkit.lm.data import (
    collate_sft,
    encode_demonstrations,
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


def encode_checked(tok, demos: list[Demonstration], max_len: int, source: str | None) -> list:
    """`encode_demonstrations`, with a demonstration whose assistant mask cannot be built named by
    its file and line (or by its index among the task's demonstrations)."""
    try:
        return encode_demonstrations(tok, demos, max_len)
    except MaskError as e:
        if source is None:
            raise UserError(f"demonstration {e.index} of the task: {e}") from None
        field = "messages" if not isinstance(demos[e.index].prompt, str) else "response"
        raise FormatError(source, line_of(source, e.index), field, str(e)) from None


def demo_nll(model, tok, encoded: list, batch_size: int = 64) -> float:
    """Mean NLL per trained token of encoded demonstrations."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            b = batch_to(collate_sft(encoded[i: i + batch_size], tok.pad_token_id), model.device)
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
    encoded = encode_checked(tok, demos, cfg.max_len, cfg.data)
    held, enc = encoded[:n_held], encoded[n_held:]

    def loss_fn(idx: list[int]):
        b = batch_to(collate_sft([enc[i] for i in idx], tok.pad_token_id), model.device)
        lp = token_logprobs(model, b.input_ids, b.attention_mask)  # (B, T-1)
        return sft_nll(lp, b.loss_mask[:, 1:])

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        before = demo_nll(model, tok, held) if held else float("nan")
        steps = fit(run_dir, model, tok, len(enc), loss_fn, cfg.optim, cfg.seed, logger, "sft",
                    resume=cfg.resume, device=cfg.device)
        after = demo_nll(model, tok, held) if held else float("nan")
        logger.log({"eval/sft/nll": after}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "demonstrations": len(enc),
               "heldout_nll_before": before, "heldout_nll": after, "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("sft: held-out response NLL %.3f -> %.3f; model in %s", before, after, run_dir.final)
    return summary
