"""Data builders shared by the trainer tests."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import torch

from rlhfkit.feedback.records import Comparison
from rlhfkit.tasks.reviews import ReviewTask


def sentiment_pairs(n: int, seed: int = 0) -> list[Comparison]:
    """Clear preferences: a glowing review beats a scathing one of the same item."""
    task, rng = ReviewTask(seed), random.Random(seed)
    out = []
    for _ in range(n):
        item = rng.choice(["kettle", "hotel", "laptop", "park", "tea", "boots"])
        prompt = task.prompt_for(item, rng.randrange(4))
        good, bad = task.review(item, 1.0, rng), task.review(item, -1.0, rng)
        out.append(Comparison(prompt, " " + good, " " + bad))
    return out


def short_is_good(prompts, responses):
    """A reward function (`--reward fn:tests_helpers:short_is_good`): fewer characters is better."""
    return [-len(r) / 20.0 for r in responses]


def kill_then_resume(args: list[str], full: Path, part: Path, timeout: float = 120.0) -> None:
    """Run `rlhfkit ARGS` to the end in `full`; start it again in `part` in a child process,
    SIGKILL the child once its first checkpoint is on disk, resume it to the end, and check that
    both runs end with the same weights, to the bit."""
    from safetensors.torch import load_file

    from rlhfkit.cli import main

    assert main([*args, "--out", str(full)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "rlhfkit.cli", *args, "--out", str(part)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not list(
            (part / "checkpoints").glob("step-*/trainer_state.pt")):
        time.sleep(0.002)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    assert not (part / "final").exists(), "the run ended before it was killed: nothing was tested"
    assert main([*args, "--out", str(part), "--resume"]) == 0
    a, b = (load_file(str(run / "final" / "model.safetensors")) for run in (full, part))
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
