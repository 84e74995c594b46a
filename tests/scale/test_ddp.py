"""DDP equivalence (issue 7): the reward model, DPO and SFT trained by 2 CPU processes (gloo,
launched by `accelerate launch` with the shipped config) follow the single-process loss
curve for the same global batch, step by step, including a last batch split unevenly. SFT's
loss is a mean over response tokens, which the two shards hold in unequal numbers."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Comparison
from rlhfkit.logging import read_metrics
from rlhfkit.tasks.reviews import ReviewTask

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
# 21 pairs in batches of 8: steps 1-2 split 4/4, step 3 (5 pairs) splits 3/2, step 4 starts epoch 2.
COMMON = ["--set", "optim.log_every=1", "--set", "optim.max_steps=4", "--set", "optim.batch_size=8",
          "--set", "optim.checkpoint_every=0", "--set", "optim.warmup_frac=0", "--set", "heldout_frac=0",
          "--set", "max_len=40", "--set", "device=cpu"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    task, rng = ReviewTask(0), random.Random(0)
    out = []
    for _ in range(21):
        prompt, a = task.example(rng)
        out.append(Comparison(prompt, a, task.example(rng)[1]))
    path = tmp_path_factory.mktemp("ddp") / "pairs.jsonl"
    write_records(path, out)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(kind: str, lm: Path, data: Path, out: Path) -> list[str]:
    if kind == "sft":  # 21 of the embedded task's demonstrations: the same batch layout as the pairs
        return [kind, "--model", str(lm), "--out", str(out), "--set", "n_demos=21", "--set", "optim.lr=1e-2",
                *COMMON]
    model_flag = "--model" if kind == "rm" else "--policy"
    lr = "1e-2" if kind == "rm" else "1e-3"
    return [kind, model_flag, str(lm), "--data", str(data), "--out", str(out), "--set", f"optim.lr={lr}", *COMMON]


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]


@pytest.mark.timeout(300)
def test_ddp_follows_single_process_loss_curve(micro_lm, pairs, tmp_path):
    lm, data = micro_lm, pairs
    env = dict(os.environ, OMP_NUM_THREADS="1", RLHFKIT_PROGRESS="0", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
           "--main_process_port", str(_free_port()), str(Path(__file__).with_name("ddp_driver.py")),
           *_argv("rm", lm, data, tmp_path / "rm-ddp"), "--then", *_argv("dpo", lm, data, tmp_path / "dpo-ddp"),
           "--then", *_argv("sft", lm, data, tmp_path / "sft-ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [(tmp_path / "rm-ddp" / f"world-{r}.txt").read_text() for r in (0, 1)] == ["2", "2"]
    for kind in ("rm", "dpo", "sft"):
        assert main(_argv(kind, lm, data, tmp_path / f"{kind}-single")) == 0
        single, ddp = _losses(tmp_path / f"{kind}-single"), _losses(tmp_path / f"{kind}-ddp")
        assert [s for s, _ in ddp] == [s for s, _ in single] == [1, 2, 3, 4], (kind, ddp)
        assert abs(single[-1][1] - single[0][1]) > 1e-3, (kind, single)  # the curve moves
        for (step, a), (_, b) in zip(single, ddp):
            assert b == pytest.approx(a, rel=1e-4, abs=1e-5), (kind, step, single, ddp)
        # one metrics file, one final model: only the main process writes
        assert len(read_metrics(tmp_path / f"{kind}-ddp" / "metrics.jsonl")) == len(
            read_metrics(tmp_path / f"{kind}-single" / "metrics.jsonl"))
        assert (tmp_path / f"{kind}-ddp" / "final" / "model.safetensors").exists()
        assert json.loads((tmp_path / f"{kind}-ddp" / "summary.json").read_text())["steps"] == 4
