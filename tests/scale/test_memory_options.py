"""Memory options of the supervised loop: gradient checkpointing recomputes the same
function (same weights after training), bf16 autocast trains with a finite loss, and fused
AdamW takes the same steps as the per-tensor one."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from rlhfkit.cli import main

BASE = ["--set", "n_demos=48", "--set", "optim.max_steps=4", "--set", "optim.batch_size=8",
        "--set", "optim.checkpoint_every=0", "--set", "max_len=40", "--set", "optim.lr=1e-2"]


def _sft(micro_lm, out, *extra: str) -> dict[str, torch.Tensor]:
    assert main(["sft", "--model", str(micro_lm), "--out", str(out), *BASE, *extra]) == 0
    return load_file(str(out / "final" / "model.safetensors"))


def test_gradient_checkpointing_gives_the_same_weights(micro_lm, tmp_path):
    plain = _sft(micro_lm, tmp_path / "plain")
    ckpt = _sft(micro_lm, tmp_path / "ckpt", "--set", "optim.gradient_checkpointing=true")
    base = load_file(str(micro_lm / "model.safetensors"))
    assert any(not torch.equal(base[k], plain[k]) for k in plain)  # it trained
    for k in plain:
        torch.testing.assert_close(plain[k], ckpt[k], rtol=1e-4, atol=1e-6)


def test_fused_adamw_matches_per_tensor_adamw(micro_lm, tmp_path):
    fused = _sft(micro_lm, tmp_path / "fused")
    loop = _sft(micro_lm, tmp_path / "loop", "--set", "optim.fused_adamw=false")
    for k in fused:  # the same update up to float rounding: 1e-4 is 1% of one step of size lr = 1e-2
        torch.testing.assert_close(fused[k], loop[k], rtol=1e-3, atol=1e-4)


def test_bf16_autocast_trains(micro_lm, tmp_path):
    out = tmp_path / "bf16"
    weights = _sft(micro_lm, out, "--set", "optim.mixed_precision=bf16")
    assert all(w.dtype == torch.float32 for w in weights.values())  # autocast keeps fp32 master weights
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_unknown_precision_is_a_clear_error(micro_lm, tmp_path, capsys):
    assert main(["sft", "--model", str(micro_lm), "--out", str(tmp_path / "x"), *BASE,
                 "--set", "optim.mixed_precision=fp8"]) != 0
    assert "mixed_precision" in capsys.readouterr().err
