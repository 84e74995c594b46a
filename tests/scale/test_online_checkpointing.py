"""Gradient checkpointing for PPO and REINFORCE: the policy then trains in train mode (which
transformers needs to recompute) with every dropout at 0, so the run takes the same steps as
the default eval-mode run, and the blocks really are recomputed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers.modeling_utils as hf_modeling
from online_helpers import make_reward_dir
from safetensors.torch import load_file

from rlhfkit.cli import main


@pytest.fixture(scope="module")
def dropout_lm(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro GPT with dropout 0.2 everywhere: eval mode and checkpointed train mode must both
    switch it off."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("dropout_lm")
    model = AutoModelForCausalLM.from_pretrained(micro_lm, resid_pdrop=0.2, embd_pdrop=0.2, attn_pdrop=0.2)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(micro_lm).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reward_dir(micro_lm, tmp_path_factory.mktemp("micro_rm"))


def _run(kind: str, lm: Path, rm: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    assert main([kind, "--policy", str(lm), "--reward-model", str(rm), "--out", str(out), "--iterations", "2",
                 "--set", "rollout.batch_prompts=4", "--set", "rollout.max_new_tokens=6", "--set", "device=cpu",
                 "--set", "lr=1e-3", "--set", "checkpoint_every=0",
                 *(["--set", "minibatch=4"] if kind == "ppo" else []), *extra]) == 0
    return load_file(str(out / "final" / "model.safetensors"))


@pytest.mark.parametrize("kind", ["ppo", "reinforce"])
def test_checkpointed_run_takes_the_same_steps(kind, dropout_lm, reward_dir, tmp_path, monkeypatch):
    plain = _run(kind, dropout_lm, reward_dir, tmp_path / "plain")
    calls = []
    original = hf_modeling.checkpoint

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(hf_modeling, "checkpoint", counting)
    ckpt = _run(kind, dropout_lm, reward_dir, tmp_path / "ckpt", "--set", "gradient_checkpointing=true")
    assert calls, "no block was checkpointed"
    base = load_file(str(dropout_lm / "model.safetensors"))
    assert any(not torch.equal(base[k], plain[k]) for k in plain)  # it trained
    for k in plain:
        torch.testing.assert_close(plain[k], ckpt[k], rtol=1e-4, atol=1e-5)
