"""`rlhfkit plan [TRAINER] --config RUN.yaml`: the memory each process needs, before anything loads."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rlhfkit.command import Command, Flag

LEAVES_OUT = ("This is an estimate. It leaves out the CUDA context and kernels (often 0.5-1 GiB per GPU), "
              "allocator caching and fragmentation, buffers of collectives, FSDP's gathered layer, and the data. "
              "Activations are rough (about 34 x hidden values per token and layer).")


def resolve_trainer(trainer: str | None, config_file: str | None, overrides: list[str]) -> tuple[str, Any]:
    """The trainer and its resolved config. With no trainer named, the one whose config accepts the file."""
    from rlhfkit.config import ConfigError, resolve
    from rlhfkit.errors import UserError
    from rlhfkit.plan import TRAINERS, config_classes

    classes = config_classes()
    if trainer is not None:
        if trainer not in classes:
            raise UserError(f"plan: unknown trainer {trainer!r}; one of {list(TRAINERS)}")
        return trainer, resolve(classes[trainer], config_file, overrides)
    if config_file is None:
        raise UserError(f"plan: name the trainer ({', '.join(TRAINERS)}) or give --config RUN.yaml")
    fits: dict[str, Any] = {}
    for name, cls in classes.items():
        try:
            fits[name] = resolve(cls, config_file, overrides)
        except ConfigError as e:
            if "no such config file" in str(e) or "not valid YAML" in str(e) or "top level" in str(e):
                raise
    if len(fits) != 1:
        which = ", ".join(fits) if fits else "none"
        raise UserError(f"plan: {config_file} fits {len(fits)} trainers' configs ({which}); "
                        f"name it: rlhfkit plan TRAINER --config {config_file}")
    return next(iter(fits.items()))


def format_plan(plan: Any) -> str:
    """The plan as an aligned text table, its total and notes."""
    from rlhfkit.plan import human

    s = plan.settings
    gc = "on" if s.gradient_checkpointing else "off"
    lines = [f"memory plan for `{plan.command}`: {s.processes} process(es), strategy {s.strategy}, "
             + f"dtype {s.dtype}, gradient checkpointing {gc}"]
    for name, m in plan.models.items():
        lines.append(f"  {name}: {m.source} ({m.model_type}, {m.params:,} parameters by {m.method})")
    width = max(len(r.component) for r in plan.rows)
    lines.append("")
    lines.append(f"  {'component':<{width}}  {'per process':>12}  note")
    for phase, title in (("static", "held throughout"), ("train", "training step"), ("generate", "rollouts"),
                         ("evaluate", "evaluation after training")):
        rows = [r for r in plan.rows if r.phase == phase]
        if rows:
            lines.append(f"  -- {title}")
            lines += [f"  {r.component:<{width}}  {human(r.bytes):>12}  {r.note}" for r in rows]
    lines.append("")
    lines.append(f"  {'total (peak)':<{width}}  {human(plan.total):>12}  held throughout + the largest of "
                 "training step, rollouts and evaluation")
    lines += [f"note: {n}" for n in plan.notes]
    lines.append(LEAVES_OUT)
    return "\n".join(lines)


def _plan(ns: argparse.Namespace) -> None:
    from rlhfkit.plan import Settings, build_plan

    trainer, cfg = resolve_trainer(ns.trainer, ns.flag__config, ns.flag__set or [])
    settings = Settings(processes=ns.flag__processes if ns.flag__processes is not None else 1,
                        strategy=ns.flag__strategy or "ddp", dtype=ns.flag__dtype or "fp32",
                        gradient_checkpointing=bool(ns.flag__gradient_checkpointing))
    plan = build_plan(trainer, cfg, settings)
    if ns.flag__json:
        d = plan.to_dict()
        d["leaves_out"] = LEAVES_OUT
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
    else:
        sys.stdout.write(format_plan(plan) + "\n")


COMMANDS = [
    Command("plan", "estimate the memory each process needs for a trainer's config, before any weights load",
            _plan, None, (
                Flag("trainer", "trainer", "pretrain, sft, rm, dpo, kto, ppo, reinforce or expert-iter "
                     "(default: the one whose config the --config file fits)", positional=True, nargs="?"),
                Flag("--config", "config", "the run's YAML config (e.g. a run directory's config.yaml)"),
                Flag("--set", "set", "override a config field, e.g. --set optim.batch_size=64 (repeatable)",
                     action="append"),
                Flag("--processes", "processes", "processes (GPUs) the run is launched on", type=int),
                Flag("--strategy", "strategy", "ddp/none: replicated; zero2: gradients and optimizer sharded; "
                     "fsdp (full shard) / zero3: weights sharded too",
                     choices=("none", "ddp", "zero2", "fsdp", "zero3")),
                Flag("--dtype", "dtype", "weight dtype; bf16 adds an fp32 master copy of the trainable weights",
                     choices=("fp32", "bf16")),
                Flag("--gradient-checkpointing", "gradient_checkpointing",
                     "recompute activations in the backward pass", action="store_true"),
                Flag("--json", "json", "print the plan as JSON", action="store_true"),
            ), common=False),
]
