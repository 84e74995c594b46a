"""The supervised training loop that pretrain, SFT, the reward model and DPO share.

It owns what is the same in all of them and nothing else: AdamW with linear warmup
and cosine decay, gradient clipping, a NaN guard, logging, progress, checkpoints
and exact resume (the data order is a function of (seed, epoch), so a resumed run
skips the batches it already consumed). Each algorithm supplies only
`loss_fn(indices) -> LossOutput`. It runs under `accelerate launch` unchanged:
each process takes its share of every global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.lm.data import minibatches
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.ops.losses import LossOutput
from rlhfkit.runtime import RunDir, load_trainer_state, save_checkpoint

log = get_logger(__name__)


@dataclass
class OptimConfig:
    lr: float = F(1e-3, "peak AdamW learning rate")
    weight_decay: float = F(0.01, "AdamW weight decay")
    warmup_frac: float = F(0.05, "fraction of steps with linear warmup")
    min_lr_frac: float = F(0.1, "cosine decay ends at this fraction of the peak")
    grad_clip: float = F(1.0, "max global gradient norm (0 disables)")
    batch_size: int = F(32, "global batch size (examples per optimizer step, all processes)")
    epochs: float = F(1.0, "passes over the data (fractions allowed)")
    max_steps: int = F(0, "stop after this many steps (0: run the epochs)")
    checkpoint_every: int = F(200, "steps between checkpoints (0: only at the end)")
    log_every: int = F(10, "steps between metric lines")


def accelerator_for(device: str) -> Accelerator:
    return Accelerator(cpu=device == "cpu" or (device == "auto" and not torch.cuda.is_available()))


def _schedule(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(cfg.warmup_frac * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(run: RunDir, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_examples: int,
        loss_fn: Callable[[list[int]], LossOutput], cfg: OptimConfig, seed: int, logger: MetricsLogger,
        desc: str, resume: bool = False, device: str = "auto", accelerator: Accelerator | None = None,
        on_step: Callable[[int], dict[str, float]] | None = None) -> int:
    """Train `model` on `loss_fn` over `n_examples` indexed examples; returns the steps taken.

    `on_step(step)` may return extra metrics (e.g. a periodic evaluation) to log."""
    if n_examples == 0:
        raise UserError(f"{desc}: no training examples")
    acc = accelerator or accelerator_for(device)
    spe = max(1, math.ceil(n_examples / cfg.batch_size))
    total = cfg.max_steps or max(1, int(round(cfg.epochs * spe)))
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = _schedule(opt, cfg, total)
    start = 0
    ckpt = run.latest_checkpoint() if resume else None
    if ckpt is not None:
        model.load_state_dict(load_file(str(ckpt / "model" / "model.safetensors")), strict=False)
        state = load_trainer_state(ckpt)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
        log.info("%s: resuming from %s (step %d of %d)", desc, ckpt, start, total)
    wrapped, opt = acc.prepare(model, opt)
    wrapped.train()
    rank, world = acc.process_index, acc.num_processes
    bar = progress(range(start, total), total=total, desc=desc)
    bar.update(start)
    epoch_batches: list[list[int]] = []
    for step in range(start, total):
        epoch, pos = divmod(step, spe)
        if pos == 0 or not epoch_batches:
            epoch_batches = list(minibatches(n_examples, cfg.batch_size, seed, epoch))
        idx = epoch_batches[pos][rank::world]
        out = loss_fn(idx)
        if not torch.isfinite(out.loss):
            raise UserError(f"{desc}: the loss became {out.loss.item()} at step {step} (examples "
                            f"{idx[:4]}...); lower the learning rate or check the data. The last good "
                            f"checkpoint is kept in {run.checkpoints}")
        opt.zero_grad(set_to_none=True)
        acc.backward(out.loss)
        gnorm = acc.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
        opt.step()
        sched.step()
        bar.update(1)
        done = step + 1
        metrics = {f"train/{k}": v for k, v in out.metrics.items()}
        metrics["train/loss"] = out.loss.item()
        if on_step is not None:
            metrics.update(on_step(done))
        if done % cfg.log_every == 0 or done == total:
            metrics.update({"train/lr": sched.get_last_lr()[0], "train/epoch": done / spe})
            if gnorm is not None:
                metrics["train/grad_norm"] = float(gnorm)
            if acc.is_main_process:
                logger.log(metrics, done)
            bar.set_postfix(loss=f"{out.loss.item():.4f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < total and acc.is_main_process:
            save_checkpoint(run, done, {"model": acc.unwrap_model(wrapped)},
                            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    bar.close()
    acc.wait_for_everyone()
    return total

