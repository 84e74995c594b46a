"""Weight sharding (issue 7): the reward model trained by 2 CPU processes with FSDP2 full
sharding or DeepSpeed ZeRO-3 (gloo, launched by `accelerate launch` with the shipped
configs/accelerate/fsdp.yaml or deepspeed_zero3.yaml) follows
the single-process loss curve for the same global batch; every process gets the full trained
weights back from `fit`; final/ and the mid-run checkpoint are Hugging Face-native full
models; and a run resumed from the mid-run checkpoint (weights and sharded optimizer state)
ends where the uninterrupted run ended."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_ddp import _free_port, pairs  # noqa: F401 (pairs: a fixture, 21 comparisons)

from rlhfkit.cli import main
from rlhfkit.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
# 17 training pairs in batches of 8: steps 1-2 split 4/4, step 3 (1 pair) splits 1/0, step 4 starts epoch 2.
COMMON = ["--set", "optim.log_every=1", "--set", "optim.max_steps=4", "--set", "optim.batch_size=8",
          "--set", "optim.warmup_frac=0", "--set", "heldout_frac=0.2", "--set", "max_len=40",
          "--set", "device=cpu", "--set", "optim.lr=1e-2"]


LORA = ("--set", "lora.enabled=true", "--set", "lora.dropout=0", "--set", "optim.checkpoint_every=0")


def _rm(lm: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["rm", "--model", str(lm), "--data", str(data), "--out", str(out), *COMMON, *extra]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r}


def _launch(config: str, *commands: list[str]) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", RLHFKIT_PROGRESS="0", HF_HUB_OFFLINE="1", DS_ACCELERATOR="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    argv: list[str] = []
    for c in commands:
        argv += (["--then"] if argv else []) + c
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
           "--mixed_precision", "no", "--main_process_port", str(_free_port()),
           str(Path(__file__).with_name("fsdp_driver.py")), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc.stderr


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert sorted(a) == sorted(b)
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], rtol=tol, atol=tol, msg=k)


def _deepspeed() -> bool:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return False
    return True


ZERO3 = pytest.param("deepspeed_zero3.yaml", marks=pytest.mark.skipif(
    not _deepspeed(), reason="deepspeed is not installed (pip install 'rlhfkit[deepspeed]'; it runs on CPU)"))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("config", ["fsdp.yaml", ZERO3])
def test_sharded_reward_model_end_to_end(config, micro_lm, pairs, tmp_path):  # noqa: F811 (the imported fixture)
    from transformers import AutoModelForSequenceClassification

    full, resumed, lora = tmp_path / "rm-sharded", tmp_path / "rm-sharded-resumed", tmp_path / "rm-lora"
    log = _launch(config, _rm(micro_lm, pairs, full, "--set", "optim.checkpoint_every=2"),
                  ["@copy-for-resume", str(full), str(resumed)],
                  _rm(micro_lm, pairs, resumed, "--set", "optim.checkpoint_every=2", "--set", "resume=true"),
                  _rm(micro_lm, pairs, lora, *LORA))
    assert [(full / f"world-{r}.txt").read_text() for r in (0, 1)] == ["2", "2"]
    # really sharded: each process holds about half of the parameter values while it trains
    held_by = {int(m[0]): (int(m[1]), int(m[2])) for m in re.findall(r"process (\d) holds (\d+) of (\d+)", log)}
    assert sorted(held_by) == [0, 1], log[-3000:]
    for held, whole in held_by.values():
        assert 0.4 * whole < held < 0.6 * whole, held_by
    single = tmp_path / "rm-single"
    assert main(_rm(micro_lm, pairs, single, "--set", "optim.checkpoint_every=0")) == 0

    # the loss curve of the sharded run is the single-process one, step by step
    a, b = _losses(single), _losses(full)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4], (a, b)
    assert abs(a[4] - a[1]) > 1e-3, a  # the curve moves
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)

    # every process holds the full trained weights after fit, the same on both
    held = [load_file(str(full / f"held-{r}.safetensors")) for r in (0, 1)]
    _close(held[0], held[1], 0.0)
    # ... and they are the single-process run's. The key bias has zero gradient in exact arithmetic
    # (softmax ignores a shift shared by all keys), so Adam turns float noise into steps of up to lr
    # there: that tensor is compared only within lr * steps.
    reference = AutoModelForSequenceClassification.from_pretrained(single / "final").state_dict()
    key_bias = {k for k in reference if k.endswith("attn.c_attn.bias")}
    _close({k: v for k, v in held[0].items() if k not in key_bias}, {k: v for k, v in reference.items()
                                                                     if k not in key_bias}, 1e-5)
    _close({k: held[0][k] for k in key_bias}, {k: reference[k] for k in key_bias}, 4e-2)

    # final/ is a Hugging Face model whose weights are the gathered trained ones
    final = AutoModelForSequenceClassification.from_pretrained(full / "final")
    assert json.loads((full / "final" / "config.json").read_text())["architectures"] == [type(final).__name__]
    _close(final.state_dict(), held[0], 0.0)
    heldout = json.loads((full / "summary.json").read_text())
    assert heldout["steps"] == 4 and heldout["train_examples"] == 17 and heldout["n_heldout"] > 0

    # the mid-run checkpoint holds full weights (not a shard) and the optimizer state: in full,
    # name-keyed (FSDP), or DeepSpeed's per-process partitions in a sibling folder (ZeRO-3)
    ckpt = full / "checkpoints" / "step-2"
    mid = AutoModelForSequenceClassification.from_pretrained(ckpt / "model")
    assert all(p.shape == final.state_dict()[k].shape for k, p in mid.state_dict().items())
    opt = torch.load(ckpt / "trainer_state.pt", weights_only=False)["optimizer"]
    if config == "fsdp.yaml":
        assert opt["state"] and all(isinstance(k, str) for k in opt["state"])
        assert {s["exp_avg"].shape for s in opt["state"].values()} == {
            p.shape for k, p in mid.named_parameters() if k in opt["state"]}
    else:
        assert opt == {"zero3": "zero3-step-2"}
        assert len(list((full / "checkpoints" / "zero3-step-2" / "zero3").glob("*optim_states.pt"))) == 2

    # resumed from step 2, the run takes steps 3-4 as the uninterrupted one did and ends in the same place
    r = _losses(resumed)
    for step in (3, 4):
        assert r[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), (step, r, b)
    _close(AutoModelForSequenceClassification.from_pretrained(resumed / "final").state_dict(), final.state_dict(), 1e-5)

    # LoRA under sharding: the same curve as one process, and a merged final/
    assert main(_rm(micro_lm, pairs, tmp_path / "lora-single", *LORA)) == 0
    a, b = _losses(tmp_path / "lora-single"), _losses(lora)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4], (a, b)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)
    merged = AutoModelForSequenceClassification.from_pretrained(lora / "final").state_dict()
    assert sorted(merged) == sorted(final.state_dict())  # no adapter keys: merged into the weights
