"""The Task protocol: what is asked, and (optionally) what is good.

A task hands out prompts by split ("train": SFT and reward-model sampling; "rm": the prompts
sampled for reward-model labels, where the task keeps them apart; "rl": online RL; "eval":
held-out evaluation; a task with no separate RM or RL stream returns its train prompts),
and may hand out demonstrations for SFT, a corpus for pretraining, and a gold scorer: the
known taste that simulated labelers share and that evaluation reports (`gold.batch`), with
its named parts where it has them (`gold.parts`).

Commands take a task as `--task SPEC` (`load_task`):
- `reviews` (the default): the embedded review task (`tasks/reviews.py`);
- `constraints`: the embedded instruction-following task with verifiable constraints, in the
  spirit of IFEval (`tasks/constraints.py`);
- `module:attribute`: a Task object in an importable module, or a callable returning one;
- a prompts file (`.txt`, one prompt per line, or `.jsonl` with a "prompt" field): prompts
  only, no gold.
Nothing in rlhfkit guesses the task from the prompts' text.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Demonstration

SPLITS = ("train", "rm", "rl", "eval")


@runtime_checkable
class Gold(Protocol):
    """A known taste: higher is better. `parts(prompt, response)` (optional) names its terms."""

    def batch(self, prompts: list[str], responses: list[str]) -> list[float]: ...


@runtime_checkable
class Task(Protocol):
    name: str

    def prompts(self, n: int, split: str = "train") -> list[str]: ...

    @property
    def gold(self) -> Gold | None: ...


@dataclass(frozen=True)
class PromptsTask:
    """A task that is only its prompts (a file, or a list): every split draws from them, cycling
    when more are asked for than there are; no demonstrations, no gold."""

    prompt_list: tuple[str, ...]
    name: str = "prompts"

    def prompts(self, n: int, split: str = "train") -> list[str]:
        if not self.prompt_list:
            raise UserError(f"task {self.name}: no prompts")
        return [self.prompt_list[i % len(self.prompt_list)] for i in range(n)]

    @property
    def gold(self) -> Gold | None:
        return None


def load_task(spec: str | Task | None, seed: int = 0) -> Task:
    """The task `spec` names (see the module docstring); a Task object is returned as it is."""
    if spec is not None and not isinstance(spec, str):
        return _checked(spec, repr(spec))
    if spec in (None, "", "reviews"):
        from rlhfkit.tasks.reviews import ReviewTask

        return ReviewTask(seed)
    if spec == "constraints":
        from rlhfkit.tasks.constraints import ConstraintsTask

        return ConstraintsTask(seed)
    path = Path(spec)
    if path.suffix in (".txt", ".jsonl", ".json") or path.exists():
        from rlhfkit.feedback.formats import read_text_rows

        if not path.exists():
            raise UserError(f"--task {spec}: no such prompts file")
        return PromptsTask(tuple(read_text_rows(str(path), "prompt", "prompts")), name=path.stem)
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise UserError(f"--task {spec!r}: give `reviews`, `constraints`, a prompts file (.txt/.jsonl) "
                        "or module:attribute")
    obj = _import(module, attr, "--task")
    if not hasattr(obj, "prompts") and callable(obj):  # a factory, called with no arguments
        try:
            obj = obj()
        except TypeError as e:
            raise UserError(f"--task {spec}: {attr} is not a task, nor a factory that takes no arguments ({e})") from e
    return _checked(obj, spec)


def _import(module: str, attr: str, what: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{what} {module}:{attr}: cannot import {module} ({e})") from e
    try:
        return getattr(mod, attr)
    except AttributeError as e:
        raise UserError(f"{what} {module}:{attr}: {module} has no attribute {attr!r}") from e


def _checked(obj: Any, spec: str) -> Task:
    if not callable(getattr(obj, "prompts", None)):
        raise UserError(f"--task {spec}: {type(obj).__name__} is not a task (it needs prompts(n, split))")
    if not hasattr(obj, "name"):
        raise UserError(f"--task {spec}: {type(obj).__name__} is not a task (it needs a name)")
    return obj


def gold_of(task: Task) -> Gold | None:
    """The task's gold scorer, or None (a task need not define the attribute at all)."""
    return getattr(task, "gold", None)


def demonstrations_of(task: Task, n: int) -> list[Demonstration]:
    """`n` demonstrations of the task, or a clear error when it has none."""
    make = getattr(task, "demonstrations", None)
    if make is None:
        raise UserError(f"task {task.name} has no demonstrations: give a demonstrations file with --data")
    return list(make(n))


def corpus_of(task: Task, n: int) -> list[str]:
    """`n` pretraining documents of the task, or a clear error when it has none."""
    make = getattr(task, "corpus", None)
    if make is None:
        raise UserError(f"task {task.name} has no corpus: give a corpus file with --data")
    return list(make(n))


def task_prompts(task: Task, n: int, split: str, path: str | None = None) -> list[str]:
    """Prompts from `path` when given (a prompts file overrides the task's), else the task's."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
    if path:
        from rlhfkit.feedback.formats import read_text_rows

        return read_text_rows(path, "prompt", "prompts")
    out = task.prompts(n, split)
    if not isinstance(out, Sequence) or not all(isinstance(p, str) for p in out):
        raise UserError(f"task {task.name}: prompts(n, {split!r}) must return a list of strings")
    return list(out)
