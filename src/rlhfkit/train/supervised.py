"""The supervised training loop that pretrain, SFT, the reward model and DPO share.

It owns what is the same in all of them and nothing else: AdamW with linear warmup
and cosine decay, gradient clipping, a NaN guard, logging, progress, checkpoints
and exact resume (the data order is a function of (seed, epoch), so a resumed run
skips the batches it already consumed). Each algorithm supplies only
`loss_fn(indices) -> LossOutput`. It runs under `accelerate launch` unchanged:
each process takes its share of every global batch, its loss is weighted by that
share (so uneven shards still give the global-batch gradient), and the logged loss
and metrics are the global batch's, reduced over processes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.lm.data import minibatches
from rlhfkit.lm.models import enable_activation_checkpointing
from rlhfkit.logging import MetricsLogger, batch_accounting, get_logger, progress
from rlhfkit.ops.losses import LossOutput
from rlhfkit.runtime import (
    RunDir,
    load_model_weights,
    load_trainer_state,
    save_checkpoint,
)
from rlhfkit.train import sharded
from rlhfkit.train.dist import Dist, accelerator_for

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
    mixed_precision: str = F("fp32", "autocast: fp32 (none), bf16 or fp16 (bf16 on GPUs; on CPUs only those with bf16 units gain)")
    gradient_checkpointing: bool = F(False, "recompute activations in the backward pass: less memory, ~30% more compute")
    fused_adamw: bool = F(True, "one fused AdamW kernel for all parameters (torch's `fused=True`) where supported")


def _adamw(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW, no weight decay on biases and norms. `fused` runs one kernel per step for all
    parameters instead of a dozen per tensor (supported for CPU and CUDA float tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and sharded.full_ndim(p) >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and sharded.full_ndim(p) < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]  # DeepSpeed drops empty groups (LoRA has no trainable 1-D ones)
    kinds = {p.device.type for p in decay + no_decay}
    fused = cfg.fused_adamw and kinds <= {"cpu", "cuda"} and all(p.dtype.is_floating_point for p in decay + no_decay)
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=True)
        except (RuntimeError, ValueError):  # torch < 2.4 fuses on CUDA only
            log.info("fused AdamW is not available here; using the per-tensor one")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def _schedule(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(cfg.warmup_frac * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@contextmanager
def _calls_through(model: torch.nn.Module, wrapped: torch.nn.Module) -> Iterator[None]:
    """Route `model(...)` through the accelerate wrapper while training.

    The algorithms' loss functions call the model they built; but DDP syncs gradients (and
    FSDP/DeepSpeed gather parameters) only in the wrapper's forward, so a direct call would
    train each process on its own shard. The wrapper's own call of its module goes straight on."""
    if wrapped is model:
        yield
        return
    inner, depth, own = model.forward, [0], "forward" in vars(model)

    def forward(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if depth[0]:
            return inner(*args, **kwargs)
        depth[0] += 1
        try:
            return wrapped(*args, **kwargs)
        finally:
            depth[0] -= 1

    model.forward = forward
    try:
        yield
    finally:
        if own:
            model.forward = inner
        else:
            del model.forward


def _share(dist: Dist, out: LossOutput, n_local: int, n_batch: int) -> float:
    """This process's weight in the global batch's mean loss: its fraction of the batch's
    examples, or, for a loss that is a mean over other units (`out.count`: tokens, summed pair
    weights), its fraction of the global count (one small all-reduce)."""
    if dist.world == 1 or out.count is None:
        return n_local / n_batch
    local = out.count if n_local else 0.0
    total = dist.sum(torch.tensor([local], dtype=torch.float64)).item()
    return local / total if total > 0 else n_local / n_batch


def _global_step_loss(dist: Dist, out: LossOutput, share: float) -> tuple[float, dict[str, float]]:
    """The global batch's loss and metrics: each process's value weighted by its share of the
    batch, summed over processes (one small all-reduce). Every process sees the same numbers,
    so a non-finite loss stops them all together."""
    if dist.world == 1:
        return out.loss.item(), dict(out.metrics)
    keys = sorted(out.metrics)
    local = torch.tensor([out.loss.item()] + [float(out.metrics[k]) for k in keys], dtype=torch.float64)
    local = dist.sum(local * share)
    return local[0].item(), dict(zip(keys, local[1:].tolist()))


def fit(run: RunDir, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_examples: int,
        loss_fn: Callable[[list[int]], LossOutput], cfg: OptimConfig, seed: int, logger: MetricsLogger,
        desc: str, resume: bool = False, device: str = "auto", accelerator: Accelerator | None = None,
        on_step: Callable[[int], dict[str, float]] | None = None) -> int:
    """Train `model` on `loss_fn` over `n_examples` indexed examples; returns the steps taken.

    `on_step(step)` may return extra metrics (e.g. a periodic evaluation) to log."""
    if n_examples == 0:
        raise UserError(f"{desc}: no training examples")
    acc = accelerator or accelerator_for(device, cfg.mixed_precision)
    shard = sharded.sharding(acc)
    spe = max(1, math.ceil(n_examples / cfg.batch_size))
    total = cfg.max_steps or max(1, int(round(cfg.epochs * spe)))
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise UserError(f"{desc}: optim.gradient_checkpointing is on, but {type(model).__name__} does not support it")
        enable_activation_checkpointing(model)
    model.to(acc.device)  # before the optimizer, so fused AdamW sees the parameters where they train
    opt = _adamw(model, cfg)
    sched = _schedule(opt, cfg, total)
    start = 0
    ckpt = run.latest_checkpoint() if resume else None
    if ckpt is not None:
        if shard != "zero3":  # ZeRO-3 loads its partitions after prepare; the model may be partitioned already
            load_model_weights(model, ckpt / "model")
        state = load_trainer_state(ckpt)
        if not shard:
            sharded.check_unsharded_optimizer_state(state["optimizer"])
            opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
        log.info("%s: resuming from %s (step %d of %d)", desc, ckpt, start, total)
    if acc.state.deepspeed_plugin is not None:
        # DeepSpeed reads the per-process batch from a prepared data loader; fit has none.
        acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = max(
            1, math.ceil(cfg.batch_size / acc.num_processes))
        acc.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] = cfg.grad_clip  # DeepSpeed clips itself
    skeleton = sharded.meta_copy(model) if shard else None  # the model's shape, for full saves
    wrapped, opt = acc.prepare(model, opt)
    if shard and ckpt is not None:
        sharded.load_optimizer_state(acc, wrapped, opt, state["optimizer"], run.checkpoints)
    if shard:
        sharded.log_held(acc, wrapped, desc)
    wrapped.train()
    if Dist(acc).is_main:
        per = math.ceil(cfg.batch_size / acc.num_processes)
        log.info("%s: %s", desc, batch_accounting([
            ("processes", acc.num_processes), ("examples per optimizer step (global)", cfg.batch_size),
            ("examples per process per step (at most)", per), ("training examples", n_examples),
            ("steps per epoch", spe), ("optimizer steps", total), ("examples seen", total * cfg.batch_size),
            ("mixed precision", cfg.mixed_precision), ("gradient checkpointing", cfg.gradient_checkpointing)]))
    with _calls_through(model, wrapped):
        _train(run, acc, wrapped, opt, sched, n_examples, loss_fn, cfg, seed, logger, desc, start, total,
               spe, on_step, skeleton)
    acc.wait_for_everyone()
    if skeleton is not None:  # hand the caller an ordinary model with the full trained weights
        sharded.restore_full(acc, wrapped, skeleton, model)
    return total


def _train(run: RunDir, acc: Accelerator, wrapped: torch.nn.Module,
           opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, n_examples: int,
           loss_fn: Callable[[list[int]], LossOutput], cfg: OptimConfig, seed: int, logger: MetricsLogger,
           desc: str, start: int, total: int, spe: int, on_step: Callable[[int], dict[str, float]] | None,
           skeleton: torch.nn.Module | None = None) -> None:
    dist = Dist(acc)
    world = dist.world
    units = sharded.backward_units(wrapped) if skeleton is not None else []
    bar = progress(range(start, total), total=total, desc=desc)
    bar.update(start)
    epoch_batches: list[list[int]] = []
    for step in range(start, total):
        epoch, pos = divmod(step, spe)
        if pos == 0 or not epoch_batches:
            epoch_batches = list(minibatches(n_examples, cfg.batch_size, seed, epoch))
        batch = epoch_batches[pos]
        idx = dist.shard(batch)
        # DDP averages gradients over processes, so scaling each shard's mean loss by
        # world * share makes the result the global-batch mean even for uneven shards. A process
        # whose shard is empty (a short last batch) still runs a forward and backward, weighted 0.
        out = loss_fn(idx or batch[:1])
        share = _share(dist, out, len(idx), len(batch))
        loss, metrics_now = _global_step_loss(dist, out, share)
        if not math.isfinite(loss):
            raise UserError(f"{desc}: the loss became {loss} at step {step} (examples "
                            f"{batch[:4]}...); lower the learning rate or check the data. The last good "
                            f"checkpoint is kept in {run.checkpoints}")
        opt.zero_grad(set_to_none=True)
        acc.backward(out.loss * (share * world) if world > 1 else out.loss)
        sharded.reshard(units)
        gnorm = acc.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
        opt.step()
        sched.step()
        bar.update(1)
        done = step + 1
        metrics = {f"train/{k}": v for k, v in metrics_now.items()}
        metrics["train/loss"] = loss
        if on_step is not None:
            metrics.update(on_step(done))
        if done % cfg.log_every == 0 or done == total:
            metrics.update({"train/lr": sched.get_last_lr()[0], "train/epoch": done / spe})
            if gnorm is not None:
                metrics["train/grad_norm"] = float(gnorm)
            if dist.is_main:
                logger.log(metrics, done)
            bar.set_postfix(loss=f"{loss:.4f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < total:
            _checkpoint(run, acc, wrapped, opt, sched, done, skeleton)
    bar.close()


def _checkpoint(run: RunDir, acc: Accelerator, wrapped: torch.nn.Module, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LambdaLR, done: int, skeleton: torch.nn.Module | None) -> None:
    """Write `checkpoints/step-N/` from the main process. Sharded weights and optimizer state
    are gathered first (a collective every process joins), so the files hold the full model."""
    main = Dist(acc).is_main
    if skeleton is None:
        if main:
            save_checkpoint(run, done, {"model": acc.unwrap_model(wrapped)},
                            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
        return
    weights = sharded.gather_weights(acc, wrapped)
    optim = sharded.optimizer_state(acc, wrapped, opt, run.checkpoints / f"zero3-step-{done}")
    if main:
        save_checkpoint(run, done, {"model": sharded.SavesFull(skeleton, weights)},
                        {"optimizer": optim, "scheduler": sched.state_dict()})
        sharded.prune_zero3(run.checkpoints)
    acc.wait_for_everyone()

