"""Run `rlhfkit expert-iter` and `best-of-n` commands (argv separated by `--then`, as in
ddp_driver.py) in one process, plainly or under `accelerate launch`, for
test_expert_iter_scale.py. Sampling is made greedy, so a chosen response depends only on its
prompt and the weights (not on which process draws it), which lets a 2-process run be compared
with a single-process one. Each process appends the prompts it sampled to `prompts-<rank>.txt`,
saves its weights after every round's fine-tuning to `weights-<rank>.pt` and writes its process
count to `world-<rank>.txt`, all in each command's `--out` folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from ddp_driver import _split

from rlhfkit.algos import expert_iteration
from rlhfkit.cli import main
from rlhfkit.train import rollouts


def _greedy_recording(out: Path, rank: int):
    def sample(policy: Any, tok: Any, reward: Any, prompts: list[str], n: int, **kwargs: Any) -> Any:
        with open(out / f"prompts-{rank}.txt", "a") as f:
            f.write("".join(p.replace("\n", " ") + "\n" for p in prompts))
        return best_of_n_local(policy, tok, reward, prompts, n, greedy=True, **kwargs)

    return sample


def _saving_weights(out: Path, rank: int):
    def fit(run: Any, model: Any, *args: Any, **kwargs: Any) -> int:
        steps = expert_iteration_fit(run, model, *args, **kwargs)
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, out / f"weights-{rank}.pt")
        return steps

    return fit


best_of_n_local, expert_iteration_fit = rollouts.best_of_n, expert_iteration.fit

if __name__ == "__main__":
    # The rank from the launcher's environment: a PartialState made before the trainer's own
    # Accelerator(cpu=True) would fix the (single-process) distributed type first.
    rank = int(os.environ.get("RANK", "0"))
    for cmd in _split(sys.argv[1:]):
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        rollouts.best_of_n = _greedy_recording(out, rank)  # what best_of_n_gathered calls on each process
        expert_iteration.fit = _saving_weights(out, rank)
        if main(cmd) != 0:
            sys.exit(1)
        state = PartialState()
        (out / f"world-{state.process_index}.txt").write_text(str(state.num_processes))
