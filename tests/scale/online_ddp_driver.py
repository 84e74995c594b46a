"""Run `rlhfkit ppo` / `rlhfkit reinforce` commands (argv separated by `--then`) in one process,
for test_online_ddp.py, plainly or under `accelerate launch`. Sampling is made greedy, so a
response depends only on its prompt and the weights (not on which process draws it or on a
random stream), which lets a 2-process run be compared with a single-process one; a command
whose first word is `sampled` keeps ordinary sampling. Each process
appends the prompts it sampled to `prompts-<rank>.txt` and its process count to
`world-<rank>.txt` in the command's `--out` folder. Commands are split at `--then` as in
ddp_driver.py (this script's folder is on sys.path)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from accelerate import PartialState
from ddp_driver import _split

from rlhfkit.algos import ppo, reinforce
from rlhfkit.cli import main
from rlhfkit.lm import sampling


def _greedy_recording(out: Path, rank: int):
    def generate(model: Any, tok: Any, prompts: list[str], **kwargs: Any) -> Any:
        kwargs.pop("temperature", None)
        with open(out / f"prompts-{rank}.txt", "a") as f:
            f.write("".join(p.replace("\n", " ") + "\n" for p in prompts))
        return sampling.generate(model, tok, prompts, greedy=True, **kwargs)

    return generate


if __name__ == "__main__":
    # The rank from the launcher's environment: a PartialState made before the trainer's own
    # Accelerator(cpu=True) would fix the (single-process) distributed type first.
    rank = int(os.environ.get("RANK", "0"))
    for cmd in _split(sys.argv[1:]):
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        sampled = cmd[0] == "sampled"
        cmd = cmd[1:] if sampled else cmd
        ppo.generate = reinforce.generate = sampling.generate if sampled else _greedy_recording(out, rank)
        if main(cmd) != 0:
            sys.exit(1)
        state = PartialState()
        (out / f"world-{state.process_index}.txt").write_text(str(state.num_processes))
