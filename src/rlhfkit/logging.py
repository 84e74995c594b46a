"""Metrics sinks and progress bars. Library code never prints: it logs here.

Metric keys read `split/group/name` (`train/loss/bt`, `eval/rm/accuracy`). Every
metric goes to `metrics.jsonl` in the run dir; `--log tensorboard` and
`--log wandb` (offline mode) add those sinks when the packages are installed.
"""

from __future__ import annotations

import json
import logging as _std_logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_CONFIGURED = False


class _StderrHandler(_std_logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (so redirection and test capture see it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def get_logger(name: str = "rlhfkit") -> _std_logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        root = _std_logging.getLogger("rlhfkit")
        if not root.handlers:
            handler = _StderrHandler()
            handler.setFormatter(_std_logging.Formatter("[rlhfkit %(asctime)s] %(message)s", "%H:%M:%S"))
            root.addHandler(handler)
        root.setLevel(os.environ.get("RLHFKIT_LOG_LEVEL", "INFO"))
        root.propagate = False
        _CONFIGURED = True
    return _std_logging.getLogger(name)


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             leave: bool = False) -> Iterator[T] | Any:
    """A tqdm bar on stderr; `RLHFKIT_PROGRESS=0` turns bars off (tests, logs)."""
    disable = os.environ.get("RLHFKIT_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable, dynamic_ncols=True,
                mininterval=0.5, file=sys.stderr)


class MetricsLogger:
    """Writes metrics to `metrics.jsonl` and to the optional sinks."""

    def __init__(self, run_dir: str | Path | None, sinks: Iterable[str] = (), resume: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if resume else "w", buffering=1)
        self._tb = None
        self._wandb = None
        log = get_logger(__name__)
        for sink in sinks:
            if sink == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(log_dir=str(Path(run_dir or ".") / "tensorboard"))
                except ImportError:
                    log.warning("--log tensorboard: the tensorboard package is not installed; skipping")
            elif sink == "wandb":
                try:
                    import wandb

                    os.environ.setdefault("WANDB_MODE", "offline")
                    self._wandb = wandb.init(dir=str(run_dir or "."), project="rlhfkit", mode="offline")
                except ImportError:
                    log.warning("--log wandb: the wandb package is not installed; skipping")
            elif sink not in ("", "jsonl", "stdout"):
                raise ValueError(f"unknown log sink {sink!r}: use tensorboard or wandb")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        clean = {k: _scalar(v) for k, v in metrics.items()}
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _scalar(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 1)() == 1:
        return v.item()
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def batch_accounting(rows: list[tuple[str, Any]]) -> str:
    """The table every trainer prints at start: what one step, one process and the run consume."""
    width = max(len(k) for k, _ in rows)
    lines = ["batch accounting:"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
