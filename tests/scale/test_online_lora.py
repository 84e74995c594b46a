"""LoRA for the online trainers (issue 7): the reference policy is the policy with its adapter
disabled (no second copy of the weights), the value head reads the shared backbone, only the
adapter and the value head train, and final/ is a merged model plain transformers loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from online_helpers import make_reward_dir
from safetensors.torch import load_file

from rlhfkit.logging import read_metrics

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reward_dir(micro_lm, tmp_path_factory.mktemp("micro_rm"))


def test_reference_is_the_base_model_with_the_adapter_disabled(micro_lm, reward_dir):
    from rlhfkit.lm.forward import response_forward
    from rlhfkit.lm.models import LoRAConfig, load_policy
    from rlhfkit.lm.sampling import generate
    from rlhfkit.train.online import RolloutConfig, setup
    from rlhfkit.train.rewards import reward_specs

    torch.manual_seed(0)
    s = setup(str(micro_lm), reward_specs([], str(reward_dir)), RolloutConfig(n_prompts=8), 0, "ppo",
              LoRAConfig(enabled=True, r=4))
    assert s.ref is None  # one copy of the weights
    with torch.no_grad():
        for name, p in s.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter: B is no longer zero
    base = load_policy(micro_lm)[0].eval()
    s.policy.eval()
    rollout = generate(s.policy, s.tokenizer, s.next_prompts(8), max_new_tokens=6)
    with torch.no_grad():
        ref, want = s.reference(rollout).logp, response_forward(base, rollout).logp
        adapted = response_forward(s.policy, rollout).logp
    mask = rollout.response_mask.bool()
    assert torch.allclose(ref[mask], want[mask], atol=1e-6, rtol=0)
    assert not torch.allclose(adapted[mask], want[mask], atol=1e-3)  # the adapter is back on afterwards


@pytest.mark.parametrize("kind", ["ppo", "reinforce"])
def test_lora_run_trains_only_adapter_and_value_head_and_saves_merged(kind, micro_lm, reward_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from rlhfkit.cli import main

    out = tmp_path / kind
    args = [kind, "--policy", str(micro_lm), "--reward-model", str(reward_dir), "--out", str(out),
            "--set", "rollout.batch_prompts=8", "--set", "rollout.max_new_tokens=6", "--set", "lr=1e-2",
            "--set", "lora.enabled=true", "--set", "lora.r=4", "--set", "checkpoint_every=2", "--set", "device=cpu"]
    if kind == "ppo":
        args += ["--set", "minibatch=4", "--set", "ppo_epochs=1"]
    assert main(args + ["--iterations", "3"]) == 0
    ckpt = out / "checkpoints" / "step-2" / "policy"
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    assert main(args + ["--iterations", "4", "--resume"]) == 0  # the adapter checkpoint loads back
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 3, 4]

    assert not (out / "final" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out / "final")  # plain transformers, no merge step
    assert not any("lora" in n for n, _ in model.named_parameters())
    base, tuned = load_file(str(Path(micro_lm) / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("c_attn.weight" in k for k in changed), changed  # only the adapted layers moved
    if kind == "ppo":
        vh = load_file(str(out / "value_head" / "value_head.safetensors"))
        assert vh["linear.weight"].abs().sum() > 0  # the value head (zero at the start) trained
