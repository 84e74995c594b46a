"""LoRA through peft: only adapter weights train, and final/ is a plain merged HF model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("peft")


def test_with_lora_trains_only_adapters(micro_lm):
    from rlhfkit.lm.models import LoRAConfig, load_policy, with_lora

    model = with_lora(load_policy(micro_lm)[0], LoRAConfig(enabled=True, r=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), trainable
    assert all("c_attn" in n for n in trainable)  # peft's default target for GPT-2


def test_lora_sft_saves_merged_model(micro_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    from rlhfkit.cli import main

    out = tmp_path / "sft"
    assert main(["sft", "--model", str(micro_lm), "--out", str(out), "--set", "n_demos=64",
                 "--set", "lora.enabled=true", "--set", "lora.r=4", "--set", "optim.max_steps=6",
                 "--set", "optim.lr=1e-2", "--set", "optim.batch_size=8", "--set", "optim.checkpoint_every=0",
                 "--set", "max_len=40"]) == 0
    assert not (out / "final" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out / "final")  # no merge step, no peft
    assert not any("lora" in n for n, _ in model.named_parameters())
    base, tuned = load_file(str(micro_lm / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("c_attn.weight" in k for k in changed), changed  # only adapted layers moved


def test_lora_reward_model_saves_merged_model_with_head(micro_lm, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlhfkit.cli import main
    from rlhfkit.feedback.formats import write_records
    from rlhfkit.feedback.records import Comparison

    data = tmp_path / "pairs.jsonl"
    write_records(data, [Comparison(f"Review the kettle {i}.", " It is great.", " It is awful.") for i in range(16)])
    out = tmp_path / "rm"
    assert main(["rm", "--model", str(micro_lm), "--data", str(data), "--out", str(out), "--set", "heldout_frac=0",
                 "--set", "lora.enabled=true", "--set", "optim.max_steps=3", "--set", "optim.batch_size=8",
                 "--set", "optim.checkpoint_every=0"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model.score.weight.shape[0] == 1
    assert not any("lora" in n for n, _ in model.named_parameters())
