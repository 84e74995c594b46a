"""Seeds, devices, run directories, atomic writes and checkpoints.

A run directory holds `config.yaml` (resolved), `metrics.jsonl`, `summary.json`,
`checkpoints/step-N/` (Hugging Face `save_pretrained` form plus `trainer_state.pt`)
and `final/`. Every file is written to a temporary name and renamed into place,
so a run killed at any instant leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from rlhfkit import config as config_lib
from rlhfkit.errors import UserError

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import torch

    torch.manual_seed(seed)


def device_for(requested: str = "auto") -> torch.device:
    import torch

    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes files 0600; give them the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if "torch" in sys.modules and isinstance(o, sys.modules["torch"].Tensor):  # no tensor without torch
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@dataclass
class RunDir:
    """The folder a command writes: config, metrics, checkpoints, summary."""

    path: Path

    @classmethod
    def create(cls, path: str | Path, cfg: Any | None = None) -> "RunDir":
        run = cls(Path(path))
        run.path.mkdir(parents=True, exist_ok=True)
        if cfg is not None:
            config_lib.save(cfg, run.path / "config.yaml")
        return run

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (its `trainer_state.pt` is written last)."""
        if not self.checkpoints.exists():
            return None
        done = [p for p in self.checkpoints.glob("step-*") if (p / "trainer_state.pt").exists()]
        if not done:
            return None
        return max(done, key=lambda p: int(p.name.split("-")[1]))


def rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run: RunDir, step: int, models: dict[str, Any], trainer_state: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write `checkpoints/step-N/` atomically: each model via `save_pretrained`, then the
    trainer state (optimizer, scheduler, RNG, data position) last, then prune old ones."""
    target = run.checkpoints / f"step-{step}"
    with atomic_dir(target) as tmp:
        for name, model in models.items():
            if hasattr(model, "save_pretrained"):
                model.save_pretrained(tmp / name)
            else:  # a plain torch module (the offline wing's models)
                from safetensors.torch import save_model

                (tmp / name).mkdir()
                save_model(model, str(tmp / name / "model.safetensors"))
        state = dict(trainer_state, step=step, rng=rng_state())
        import torch

        torch.save(state, tmp / "trainer_state.pt")
    older = sorted((p for p in run.checkpoints.glob("step-*") if p != target), key=lambda p: int(p.name.split("-")[1]))
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def load_model_weights(model: Any, folder: Path) -> None:
    """Weights that `save_checkpoint` wrote for one model: the full model (`model.safetensors`),
    or the adapter peft saved (`adapter_model.safetensors`: LoRA or a prefix)."""
    from safetensors.torch import load_file

    adapter = folder / "adapter_model.safetensors"
    if adapter.exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
    elif (folder / "model.safetensors").exists():
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    else:
        raise UserError(f"{folder}: the checkpoint holds no weights (model.safetensors or adapter_model.safetensors)")


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    import torch

    state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    set_rng_state(state["rng"])
    return state
