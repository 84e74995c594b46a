"""`rlhfkit offline train-dt | train-cdt | eval` as a user runs them, on a tiny CartPole dataset,
and a run killed with SIGKILL that `--resume` finishes with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from rlhfkit.cli import main
from rlhfkit.offline.collect import CollectConfig, run_collect

TINY = ["--steps", "40", "--set", "hidden=16", "--set", "layers=1", "--set", "context=5",
        "--set", "eval_episodes=2", "--set", "batch_size=8", "--set", "checkpoint_every=20"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole-data")
    run_collect(CollectConfig(env="CartPole-v1", out=str(out), steps=1024, transitions=300, checkpoints=4,
                              eval_episodes=2, n_envs=4))
    return out


def test_train_dt_then_eval_from_the_command_line(data, tmp_path):
    out = tmp_path / "dt"
    assert main(["offline", "train-dt", "--data", str(data), "--mixture", "medium-replay", "--out", str(out),
                 *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dt" and len(summary["targets"]) == 5
    assert (out / "report.md").exists() and (out / "return_vs_target.png").exists()
    assert main(["offline", "eval", "--out", str(out), "--episodes", "3", "--set", "targets=[20.0]"]) == 0
    again = json.loads((out / "eval.json").read_text())
    assert [p["target_return"] for p in again["targets"]] == [20.0]


def test_train_cdt_and_a_baseline_from_the_command_line(data, tmp_path):
    out = tmp_path / "cdt"
    assert main(["offline", "train-cdt", "--data", str(data), "--mixture", "medium-replay", "--out", str(out),
                 *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "cdt" and len(summary["thresholds"]) >= 1
    assert all("norm_cost_mean" in p for p in summary["thresholds"])
    assert main(["offline", "train-dt", "--method", "bc", "--data", str(data), "--out", str(tmp_path / "bc"),
                 *TINY]) == 0
    assert main(["offline", "train-dt", "--data", str(data), "--mixture", "nope", "--out", str(tmp_path / "x"),
                 *TINY]) == 2


def _weights(run) -> dict:
    final = max((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(str(final / "model" / "model.safetensors"))


@pytest.mark.timeout(300)
def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(data, tmp_path):
    args = ["offline", "train-dt", "--data", str(data), "--mixture", "medium-replay", "--steps", "600",
            "--set", "hidden=16", "--set", "layers=1", "--set", "context=5", "--set", "eval_episodes=1",
            "--set", "batch_size=8", "--set", "checkpoint_every=100", "--set", "targets=[10.0]"]
    env = {**os.environ, "RLHFKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rlhfkit.cli", *args]
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run([*cmd, "--out", str(full)], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut / "checkpoints" / "step-200" / "trainer_state.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "summary.json").exists()
    subprocess.run([*cmd, "--out", str(cut), "--resume"], check=True, env=env, capture_output=True)
    a, b = _weights(full), _weights(cut)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
