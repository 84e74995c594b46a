"""Run `rlhfkit` commands under `accelerate launch` with FSDP, for test_fsdp.py.

Arguments: the commands' argv separated by `--then`. A command `@copy-for-resume SRC DST`
copies a run folder without its final model and summary (the main process; the others wait),
so the next command can resume it. After each training command every process writes the
weights its caller's model holds once `fit` returns to `<out>/held-<rank>.safetensors`, so the
test can check that every process got the full trained weights back."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from ddp_driver import _split
from safetensors.torch import save_file

from rlhfkit.algos import reward_model, sft
from rlhfkit.cli import main

_OUT: list[Path] = []


def _recording(fit: Callable[..., int]) -> Callable[..., int]:
    def wrapper(run: Any, model: torch.nn.Module, *args: Any, **kwargs: Any) -> int:
        steps = fit(run, model, *args, **kwargs)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(_OUT[-1] / f"held-{PartialState().process_index}.safetensors"))
        return steps
    return wrapper


if __name__ == "__main__":
    reward_model.fit = _recording(reward_model.fit)
    sft.fit = _recording(sft.fit)
    state = PartialState(cpu=True)  # the tests run on CPU; FSDP is selected per run by rlhfkit
    for cmd in _split(sys.argv[1:]):
        if cmd[0] == "@copy-for-resume":
            if state.is_main_process:
                shutil.copytree(cmd[1], cmd[2], ignore=shutil.ignore_patterns("final", "summary.json", "held-*"))
            state.wait_for_everyone()
            continue
        _OUT.append(Path(cmd[cmd.index("--out") + 1]))
        if main(cmd) != 0:
            sys.exit(1)
        (_OUT[-1] / f"world-{state.process_index}.txt").write_text(str(state.num_processes))
