"""What an online method optimizes: a weighted sum of reward parts, each logged on its own.

A part is named on the command line (`--reward SPEC`, repeatable):
- `rm:PATH`: a trained reward model's score r(x, y) (`rlhfkit rm`);
- `fn:module:function`: a Python callable `(prompts, responses) -> list[float]`, called on the
  whole batch at once: a verifier, a unit test, a regex, a length rule;
and takes a weight after `@` (default 1): `--reward rm:runs/rm/final@1 --reward fn:my.mod:short@0.1`.
As in TRL's `reward_funcs` and verl's reward functions, code-computed rewards sit beside
learned ones; unlike a reward model, a function can be exact, which is the point of
"verifiable rewards".
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlhfkit.errors import UserError

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass(frozen=True)
class RewardPart:
    kind: str  # "rm" or "fn"
    target: str  # a folder, or module:function
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"rm:{self.target.rstrip('/').split('/')[-1] or self.target}" if self.kind == "rm" else \
            self.target.split(":")[-1]


def parse_reward(spec: str) -> RewardPart:
    """`rm:PATH[@w]` or `fn:module:function[@w]`."""
    body, at, w = spec.rpartition("@") if "@" in spec else (spec, "", "")
    kind, sep, target = body.partition(":")
    if not sep or kind not in ("rm", "fn") or not target:
        raise UserError(f"--reward {spec!r}: give rm:PATH or fn:module:function, optionally @weight")
    if kind == "fn" and ":" not in target:
        raise UserError(f"--reward {spec!r}: a function is named module:function")
    try:
        weight = float(w) if at else 1.0
    except ValueError as e:
        raise UserError(f"--reward {spec!r}: the weight after @ must be a number, got {w!r}") from e
    if not math.isfinite(weight):
        raise UserError(f"--reward {spec!r}: the weight must be finite")
    return RewardPart(kind, target, weight)


def reward_specs(rewards: Sequence[str], reward_model: str | None) -> list[RewardPart]:
    """The parts a run optimizes: `--reward` specs, or `--reward-model PATH` as `rm:PATH`."""
    parts = [parse_reward(s) for s in rewards]
    if reward_model:
        parts.insert(0, RewardPart("rm", reward_model))
    return parts


def load_function(target: str) -> RewardFn:
    module, _, attr = target.rpartition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"--reward fn:{target}: cannot load it ({e})") from e
    if not callable(fn):
        raise UserError(f"--reward fn:{target}: {type(fn).__name__} is not callable")
    return fn


class Rewards:
    """Called on (prompts, responses): the total reward (N,); `scored` also gives each part's
    raw value (N,) by name."""

    def __init__(self, parts: Sequence[RewardPart], rm_max_len: int = 96) -> None:
        if not parts:
            raise UserError("no reward: give --reward-model PATH, or --reward rm:PATH / fn:module:function")
        from rlhfkit.lm.scoring import RewardModel

        self.parts = list(parts)
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise UserError(f"--reward: two parts share a name ({names}); each is logged by its name")
        self.scorers: list[Any] = [RewardModel(p.target, rm_max_len) if p.kind == "rm" else load_function(p.target)
                                   for p in self.parts]

    @property
    def reward_models(self) -> list[Any]:
        return [s for p, s in zip(self.parts, self.scorers) if p.kind == "rm"]

    def to(self, device: torch.device | str) -> Rewards:
        for rm in self.reward_models:
            rm.model.to(device)
        return self

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return self.scored(prompts, responses)[0]

    def scored(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values: dict[str, torch.Tensor] = {}
        total = torch.zeros(len(prompts), dtype=torch.float32)
        for part, scorer in zip(self.parts, self.scorers):
            v = _as_scores(scorer(list(prompts), list(responses)), len(prompts), part)
            values[part.name] = v
            total = total + part.weight * v
        return total, values


def _as_scores(out: Any, n: int, part: RewardPart) -> torch.Tensor:
    try:
        v = torch.as_tensor(out if isinstance(out, torch.Tensor) else list(out), dtype=torch.float32).cpu()
    except (TypeError, ValueError) as e:
        raise UserError(f"reward {part.kind}:{part.target} returned {type(out).__name__}, not numbers ({e})") from e
    if v.shape != (n,):
        raise UserError(f"reward {part.kind}:{part.target} returned shape {tuple(v.shape)} for {n} responses; "
                        f"it must return one number per response")
    if not torch.isfinite(v).all():
        bad = int((~torch.isfinite(v)).nonzero()[0])
        raise UserError(f"reward {part.kind}:{part.target} returned a non-finite value ({v[bad].item()}) "
                        f"for response {bad}")
    return v
