"""This process's place in an `accelerate launch` / `torchrun` job: the run's accelerator, "am I
the main process", and every cross-process reduction the trainers use (sums, means, gathers,
weighted metrics, global whitening, the loss weight of an uneven shard), with the backward
step through the accelerator. The one home of process coordination (DESIGN.md sec. 3.2), so
the methods read as single-process code: with one process each collective returns its input.

Distributed runs: a global batch is split by rank (`Dist.shard`: process r holds items r,
r + W, ...); batch statistics (reward normalization, advantage whitening, logged metrics) are
the global batch's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from accelerate import Accelerator

from rlhfkit.errors import UserError
from rlhfkit.ops.advantages import whiten
from rlhfkit.runtime import rng_state, set_rng_state
from rlhfkit.train import sharded


def is_main_process() -> bool:
    """Rank 0 of a `torchrun`/`accelerate launch` job (or a plain run): the one that writes files.
    For code that holds no accelerator; with one, `Dist(acc).is_main` says the same."""
    return int(os.environ.get("RANK", "0")) == 0


def accelerator_for(device: str, mixed_precision: str = "fp32") -> Accelerator:
    """The run's accelerator. `mixed_precision` is fp32 (accelerate's "no", also accepted), bf16 or fp16."""
    mixed_precision = "no" if mixed_precision == "fp32" else mixed_precision
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise UserError(f"mixed_precision={mixed_precision!r}: use fp32, bf16 or fp16")
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        # accelerate keeps one state per process; a later run in the same process (tests, the
        # quickstart's stages) may ask for another precision, so start that state afresh.
        AcceleratorState._reset_state()
    return sharded.make_accelerator(device == "cpu" or (device == "auto" and not torch.cuda.is_available()),
                                    mixed_precision)


class Dist:
    """This process's place in an `accelerate launch` job, and the collectives the trainers
    need. Without an accelerator (or with one process) each method returns its input unchanged."""

    def __init__(self, acc: Accelerator | None = None) -> None:
        self.acc = acc
        self.rank = acc.process_index if acc is not None else 0
        self.world = acc.num_processes if acc is not None else 1
        self.is_main = self.rank == 0

    def reseed(self, seed: int) -> None:
        """Give each process its own sampling stream (the same prompts' samples would otherwise be
        drawn with the same noise on every process); nothing changes for a single process."""
        if self.world > 1:
            torch.manual_seed(seed * 1000003 + self.rank)

    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's RNG states (python, numpy, torch), in rank order: for a checkpoint."""
        return self.gather_objects(rng_state())

    def restore_rng(self, by_rank: list[dict[str, Any]] | None, step: int) -> None:
        """Each process takes back its own RNG states from `rng_states()`; resumed with a different
        number of processes, each process's sampling stream is seeded afresh instead."""
        if by_rank is not None and len(by_rank) == self.world:
            set_rng_state(by_rank[self.rank])
        else:
            self.reseed(step * 7919 + 1)

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This process's share of a global batch: items rank, rank + W, ..."""
        return list(items)[self.rank::self.world]

    def local_rows(self, batch: Iterable[int], group: int = 1) -> list[int]:
        """This process's rows of `batch`, a set of global sample indices, when the global batch is
        `group` samples per prompt (prompt-major) and the prompts were `shard`ed: global sample j,
        of prompt p = j // group, is held by process p % W, as its row (p // W) * group + j % group."""
        return [(j // group // self.world) * group + j % group for j in batch
                if (j // group) % self.world == self.rank]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over processes (float64 on the wire), back on `x`'s device and dtype."""
        if self.world == 1:
            return x
        assert self.acc is not None
        total = self.acc.reduce(x.detach().to(self.acc.device, torch.float64), reduction="sum")
        return total.to(x.device, x.dtype)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of every process's 1-D `x` together (a 0-d tensor)."""
        if self.world == 1:
            return x.mean()
        n, total = self.sum(torch.stack([x.new_tensor(float(len(x))), x.sum()])).unbind()
        return total / n

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every process's 1-D `x` concatenated (rank order; lengths may differ)."""
        if self.world == 1:
            return x
        parts = self.gather_objects(x.detach().cpu().tolist())
        return torch.tensor([v for part in parts for v in part], dtype=x.dtype, device=x.device)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable), in rank order."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, obj)
        return parts

    def step_metrics(self, stats: dict[str, list[float]], prefix: str, weight: float,
                     maxed: Sequence[str] = ("ratio_max",)) -> dict[str, float]:
        """An update's per-step metrics as `prefix/name`: each name's mean over this process's steps
        (its maximum for `maxed`), then combined over processes with `weight`. A process that took
        no step of its own (every row of its share masked out) reports no metric of its own but
        still joins every collective, with weight 0."""
        names = list(dict.fromkeys(k for part in self.gather_objects(list(stats)) for k in part))
        local = {f"{prefix}/{k}": (max(v) if k in maxed else sum(v) / len(v)) if (v := stats.get(k)) else 0.0
                 for k in names}
        return self.mean_metrics(local, weight if stats else 0.0,
                                 maxed=[f"{prefix}/{k}" for k in maxed if k in names])

    def gather_shards(self, mine: Sequence[Any]) -> list[Any]:
        """Undo `shard`: every process's share gathered back into one list in the global order
        (process r held items r, r + W, ...)."""
        return unshard(self.gather_objects(list(mine)))

    def mean_metrics(self, m: dict[str, float], weight: float, maxed: Sequence[str] = ()) -> dict[str, float]:
        """Per-process metrics combined: `weight`-weighted means, maxima for the `maxed` keys."""
        if self.world == 1:
            return m
        keys = sorted(k for k in m if k not in maxed)
        w = self.sum(torch.tensor([float(weight)], dtype=torch.float64))
        vals = self.sum(torch.tensor([m[k] * weight for k in keys], dtype=torch.float64)) / w
        out = dict(zip(keys, vals.tolist()))
        for k in maxed:
            if k in m:
                t = torch.tensor([m[k]], dtype=torch.float64, device=self.acc.device)  # type: ignore[union-attr]
                out[k] = self.acc.reduce(t, reduction="max").item()  # type: ignore[union-attr]
        return out

    def whiten(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`ops.advantages.whiten` with the mean and (unbiased) variance of the global batch's
        masked positions."""
        if self.world == 1:
            return whiten(x, mask)
        m = mask.to(x.dtype)
        n, total = self.sum(torch.stack([m.sum(), (x * m).sum()])).unbind()
        mean = total / n
        var = self.sum(((x - mean) ** 2 * m).sum()) / (n - 1).clamp(min=1.0)
        return (x - mean) * torch.rsqrt(var + 1e-8) * m  # (B, R)

    def share_weight(self, local: float | torch.Tensor) -> float | torch.Tensor:
        """The factor that makes DDP's mean of per-process losses the global batch's loss, for a
        loss that is a mean over `local` things here (samples or tokens): W * local / global.
        1 in a single process; a tensor count gives a tensor factor in its dtype."""
        if self.world == 1:
            return 1.0
        if isinstance(local, torch.Tensor):
            return self.world * local / self.sum(local).clamp(min=1.0)
        total = self.sum(torch.tensor([float(local)], dtype=torch.float64)).item()
        return self.world * local / max(total, 1.0)

    def backward(self, opt: Any, loss: torch.Tensor, grad_clip: float, module: torch.nn.Module) -> None:
        """One optimizer step on `loss`: through the accelerator when there is one (DDP averages
        the gradients), with the gradient norm of `module`'s parameters clipped to `grad_clip`."""
        opt.zero_grad(set_to_none=True)
        if self.acc is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        else:
            self.acc.backward(loss)
            self.acc.clip_grad_norm_(module.parameters(), grad_clip)
        opt.step()


def unshard(parts: list[list[Any]]) -> list[Any]:
    """The inverse of `Dist.shard`: per-process shares, in rank order -> one list in the global order."""
    world = len(parts)
    out: list[Any] = [None] * sum(len(p) for p in parts)
    for rank, part in enumerate(parts):
        out[rank::world] = part
    return out
