"""Crash-safe resume of the online trainers (issues 7, 13): a PPO (a REINFORCE, a GRPO) run is
killed with SIGKILL mid-training, resumed with --resume, and on CPU its final weights equal those
of an uninterrupted run of the same seed bit for bit. That needs every piece of state back:
weights, value head, optimizer, every RNG state (sampling draws from torch's generator), the
prompt position, the KL controller's beta and the reward normalizer's statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from online_helpers import SEQUENCE, child_env, kill_when, make_reward_dir
from safetensors.torch import load_file

from rlhfkit.logging import read_metrics

ITERATIONS = 8


@pytest.fixture(scope="module")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reward_dir(micro_lm, tmp_path_factory.mktemp("micro_rm"))


def _argv(kind: str, lm: Path, rm: Path, out: Path) -> list[str]:
    prompts = 4 if kind == "grpo" else 8
    args = [kind, "--policy", str(lm), "--reward-model", str(rm), "--out", str(out), "--iterations", str(ITERATIONS),
            "--set", f"rollout.batch_prompts={prompts}", "--set", "rollout.max_new_tokens=8",
            "--set", "checkpoint_every=2", "--set", "lr=3e-3", "--set", "device=cpu", "--set", "seed=3"]
    if kind == "grpo":  # 4 prompts x 2 samples, two epochs of two minibatches; the KL term reads the reference
        return [*args, "--set", "group_size=2", "--set", "epochs=2", "--set", "minibatch=4", "--set", "beta=0.05"]
    args += ["--set", "kl.adaptive=true", "--set", "kl.target=0.5"]
    if kind == "ppo":
        args += ["--set", "minibatch=4", "--set", "ppo_epochs=2"]
    return args


def _kill_mid_run(argv: list[str], out: Path) -> None:
    """Start the run and SIGKILL it as soon as its first checkpoint is complete."""
    kill_when(argv, out / "checkpoints" / "step-2" / "trainer_state.pt", 120,
              "the run ended before its first checkpoint", "no checkpoint after 120 s")
    assert not (out / "final").exists(), "the run finished before it was killed: nothing was tested"


def _weights(run: Path) -> dict[str, torch.Tensor]:
    w = load_file(str(run / "final" / "model.safetensors"))
    if (run / "value_head").exists():
        w.update({f"value_head.{k}": v for k, v in load_file(str(run / "value_head" / "value_head.safetensors")).items()})
    return w


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["ppo", "reinforce", "grpo"])
def test_sigkill_then_resume_equals_uninterrupted_run(kind, micro_lm, reward_dir, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    _kill_mid_run(_argv(kind, micro_lm, reward_dir, killed), killed)
    resumed = _argv(kind, micro_lm, reward_dir, killed) + ["--resume"]
    proc = subprocess.run([sys.executable, "-c", SEQUENCE,
                           " ".join(resumed) + "|" + " ".join(_argv(kind, micro_lm, reward_dir, whole))],
                          env=child_env(), capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming from" in proc.stderr

    a, b = _weights(killed), _weights(whole)
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{kind}: {name} differs after resume"
    init = load_file(str(micro_lm / "model.safetensors"))
    assert any(not torch.equal(init[n], a[n]) for n in init if n in a), "training did not move the weights"

    rows_k, rows_w = read_metrics(killed / "metrics.jsonl"), read_metrics(whole / "metrics.jsonl")
    assert [r["step"] for r in rows_w] == list(range(1, ITERATIONS + 1))
    assert rows_k[-1]["step"] == ITERATIONS and [r["step"] for r in rows_k].count(1) == 1  # resumed, not restarted
    assert json.dumps(rows_k[-1]) == json.dumps(rows_w[-1])  # beta, KL, scores: the same last iteration (NaN too)
    if kind != "grpo":  # GRPO's beta is fixed
        assert rows_w[-1]["rollout/beta"] != pytest.approx(0.05)  # the adaptive controller moved (and was restored)
    sk, sw = (json.loads((run / "summary.json").read_text()) for run in (killed, whole))
    assert sk["iterations"] == sw["iterations"] == ITERATIONS  # the summary covers the whole run
    assert json.dumps({k: v for k, v in sk.items() if k not in ("wall_s", "final")}) == json.dumps(
        {k: v for k, v in sw.items() if k not in ("wall_s", "final")})
