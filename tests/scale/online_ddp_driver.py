"""Run `rlhfkit ppo` / `rlhfkit reinforce` / `rlhfkit grpo` commands (argv separated by `--then`)
in one process, for test_online_ddp.py, plainly or under `accelerate launch`. Sampling is made
greedy, so a response depends only on its prompt and the weights (not on which process draws it
or on a random stream), which lets a 2-process run be compared with a single-process one; a
command whose first word is `sampled` keeps ordinary sampling. GRPO cannot learn from greedy
samples (the G responses of a group would be equal, so every advantage is 0): its groups are
sampled each from its own generator, seeded by the prompt and the iteration, so a group's
responses again depend only on its prompt, the iteration and the weights. Each process
appends the prompts it sampled to `prompts-<rank>.txt` and its process count to
`world-<rank>.txt` in the command's `--out` folder. Commands are split at `--then` as in
ddp_driver.py (this script's folder is on sys.path)."""

from __future__ import annotations

import itertools
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from ddp_driver import _split

from rlhfkit.algos import grpo, ppo, reinforce
from rlhfkit.cli import main
from rlhfkit.lm import sampling
from rlhfkit.types import Rollout


def _greedy_recording(out: Path, rank: int):
    def generate(model: Any, tok: Any, prompts: list[str], **kwargs: Any) -> Any:
        kwargs.pop("temperature", None)
        with open(out / f"prompts-{rank}.txt", "a") as f:
            f.write("".join(p.replace("\n", " ") + "\n" for p in prompts))
        return sampling.generate(model, tok, prompts, greedy=True, **kwargs)

    return generate


def _seeded_groups(out: Path, rank: int):
    """Each run of equal prompts (a GRPO group) sampled from torch's generator seeded with
    (iteration, prompt); the global generator's state is left as it was."""
    calls = itertools.count()

    def generate(model: Any, tok: Any, prompts: list[str], **kwargs: Any) -> Rollout:
        it = next(calls)
        with open(out / f"prompts-{rank}.txt", "a") as f:
            f.write("".join(p.replace("\n", " ") + "\n" for p in prompts))
        parts = []
        for prompt, group in itertools.groupby(prompts):
            with torch.random.fork_rng():
                torch.manual_seed(zlib.crc32(f"{it}|{prompt}".encode()))
                parts.append(sampling.generate(model, tok, list(group), **kwargs))
        return _concat(parts, tok.pad_token_id)

    return generate


def _concat(parts: list[Rollout], pad: int) -> Rollout:
    """Rollouts stacked: prompts re-left-padded and responses re-right-padded to the longest."""
    P = max(r.prompt_len for r in parts)
    R = max(r.response_mask.shape[1] for r in parts)

    def padded(x: torch.Tensor, left: int, right: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (left, right), value=value)

    ids, att, resp = [], [], []
    for r in parts:
        left, right = P - r.prompt_len, R - r.response_mask.shape[1]
        ids.append(padded(r.ids, left, right, pad))
        att.append(padded(r.attention_mask, left, right, 0))
        resp.append(padded(r.response_mask, 0, right, 0))
    return Rollout(torch.cat(ids), torch.cat(att), torch.cat(resp), P,
                   tuple(p for r in parts for p in r.prompts), tuple(t for r in parts for t in r.responses))


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
        grpo.generate = sampling.generate if sampled else _seeded_groups(out, rank)
        if main(cmd) != 0:
            sys.exit(1)
        state = PartialState()
        (out / f"world-{state.process_index}.txt").write_text(str(state.num_processes))
