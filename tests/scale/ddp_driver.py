"""Run several `rlhfkit` commands in one launched process (one start-up instead of one per
command); used by test_ddp.py under `accelerate launch`. Arguments: the commands' argv,
separated by `--then`. Writes `world-<rank>.txt` (the process count this rank saw) into the
first command's `--out` folder, so the test knows the run really was distributed."""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate import PartialState

from rlhfkit.cli import main


def _split(argv: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for a in argv:
        if a == "--then":
            out.append([])
        else:
            out[-1].append(a)
    return out


if __name__ == "__main__":
    commands = _split(sys.argv[1:])
    for cmd in commands:
        if main(cmd) != 0:
            sys.exit(1)
    state = PartialState()
    out = Path(commands[0][commands[0].index("--out") + 1])
    (out / f"world-{state.process_index}.txt").write_text(str(state.num_processes))
