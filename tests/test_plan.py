"""`rlhfkit plan`: parameter counts, bytes per strategy, activations, trainers' models, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from rlhfkit.algos.dpo import DPOConfig
from rlhfkit.algos.ppo import PPOConfig
from rlhfkit.algos.reinforce import ReinforceConfig
from rlhfkit.algos.reward_model import RMConfig
from rlhfkit.algos.sft import SFTConfig
from rlhfkit.cli import main
from rlhfkit.config import ModelConfig
from rlhfkit.errors import UserError
from rlhfkit.lm.models import LoRAConfig, build_tiny_gpt, train_tokenizer
from rlhfkit.plan import (
    Settings,
    _meta_shape,
    activation_bytes,
    build_plan,
    kv_cache_bytes,
    load_shape,
    lora_params,
    shape_from_hf_config,
    tiny_gpt_shape,
    trained_rows,
)

QWEN_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}


def _bytes(rows) -> dict[str, int]:
    return {r.component.split(" (")[0]: r.bytes for r in rows}


def test_estimate_matches_a_real_tiny_gpt_after_one_adamw_step() -> None:
    """Weights + gradients + AdamW state measured on a built model vs the fp32 single-process estimate."""
    torch.manual_seed(0)
    tok = train_tokenizer(["a good film, a bad film, the plot was fine"] * 20, vocab_size=300)
    mc = ModelConfig(n_layer=2, n_head=2, n_embd=32, n_positions=48)
    model = build_tiny_gpt(mc, tok)
    mc.vocab_size = len(tok)
    shape = tiny_gpt_shape(mc)
    assert shape.params == sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, len(tok), (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    measured = sum(p.numel() * p.element_size() for p in model.parameters())
    measured += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    measured += sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
                    if torch.is_tensor(t))
    estimate = sum(r.bytes for r in trained_rows("policy", shape.params, shape.params, Settings()))
    # the estimate leaves out AdamW's per-tensor step counters (4 bytes each): well under 1%
    assert abs(measured - estimate) / measured < 0.01
    assert estimate == 16 * shape.params


def test_qwen_05b_count_by_hand() -> None:
    # embeddings 151936 x 896 (tied) + 24 x (q 896x896+896, k and v 896x128+128, o 896x896,
    # MLP 3 x 896 x 4864, 2 norms of 896) + final norm 896
    per_layer = (896 * 896 + 896) + 2 * (896 * 128 + 128) + 896 * 896 + 3 * 896 * 4864 + 2 * 896
    assert per_layer == 14_912_384
    shape = shape_from_hf_config(Qwen2Config(**QWEN_05B), "qwen")
    assert shape.params == 151936 * 896 + 24 * per_layer + 896 == 494_032_768
    assert shape.head_params == 0 and shape.kv_dim == 128


@pytest.mark.parametrize("config", [
    GPT2Config(vocab_size=300, n_positions=40, n_embd=32, n_layer=2, n_head=2, n_inner=80),
    Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=300, tie_word_embeddings=True),
    LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=1, vocab_size=300, tie_word_embeddings=False, attention_bias=True,
                mlp_bias=True),
    MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=256, tie_word_embeddings=False),
    Qwen3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, vocab_size=300, tie_word_embeddings=True),
], ids=["gpt2", "qwen2", "llama-bias-untied", "mistral", "qwen3"])
def test_formula_equals_meta_device_count(config) -> None:
    formula, exact = shape_from_hf_config(config, "f"), _meta_shape(config, "m")
    assert formula.method == "formula" and exact.method == "meta-device count"
    assert formula.params == exact.params
    assert formula.head_params == exact.head_params
    lora = LoRAConfig(enabled=True, r=4, target_modules=["c_attn", "c_fc", "q_proj", "k_proj", "down_proj"])
    targets = [n for n, *_ in formula.linears if n in lora.target_modules]
    assert lora_params(formula, 4, targets) == lora_params(exact, 4, targets)


def test_bytes_per_strategy_by_hand() -> None:
    by = lambda **kw: _bytes(trained_rows("m", 1000, 1000, Settings(**kw)))
    assert by() == {"m weights": 4000, "m gradients": 4000, "m AdamW moments": 8000}
    assert by(processes=4, strategy="ddp", dtype="bf16") == {
        "m weights": 2000, "m gradients": 2000, "m AdamW moments": 8000, "m fp32 master weights": 4000}
    assert by(processes=4, strategy="zero2", dtype="bf16") == {
        "m weights": 2000, "m gradients": 500, "m AdamW moments": 2000, "m fp32 master weights": 1000}
    assert by(processes=4, strategy="zero3") == {"m weights": 1000, "m gradients": 1000, "m AdamW moments": 2000}
    assert by(processes=4, strategy="fsdp") == by(processes=4, strategy="zero3")
    # LoRA: all weights held, only the 10 adapter parameters carry states
    assert _bytes(trained_rows("m", 1010, 10, Settings(dtype="bf16"))) == {
        "m weights": 2020, "m gradients": 20, "m AdamW moments": 80, "m fp32 master weights": 40}


def test_lora_activation_and_kv_cache_by_hand() -> None:
    gpt = tiny_gpt_shape(ModelConfig(n_layer=4, n_embd=128))
    assert lora_params(gpt, 8, None) == 4 * 8 * (128 + 384)  # peft's GPT-2 default: c_attn
    qwen = shape_from_hf_config(Qwen2Config(**QWEN_05B), "qwen")
    assert lora_params(qwen, 16, None) == 24 * 16 * ((896 + 896) + (896 + 128))  # q_proj, v_proj
    small = tiny_gpt_shape(ModelConfig(n_layer=2, n_embd=64))
    assert activation_bytes(small, 4, 10, Settings()) == 2 * (4 * 10 * 64 * 34 * 4 // 2) == 348_160
    assert activation_bytes(small, 4, 10, Settings(gradient_checkpointing=True)) == 2 * 4 * 10 * 64 * 4 + 174_080
    assert kv_cache_bytes(qwen, 8, 100, Settings(dtype="bf16")) == 2 * 24 * 128 * 8 * 100 * 2


def test_each_trainer_holds_its_models() -> None:
    s = Settings(processes=2, strategy="zero2", dtype="bf16")
    comps = lambda plan: {r.component.split(" (")[0] for r in plan.rows}
    ppo, rf = build_plan("ppo", PPOConfig(), s), build_plan("reinforce", ReinforceConfig(), s)
    for plan in (ppo, rf):
        assert {"reference policy weights", "reward model weights", "generation KV cache"} <= comps(plan)
    assert "policy + value head weights" in comps(ppo) and "policy weights" in comps(rf)
    dpo = build_plan("dpo", DPOConfig(optim=SFTConfig().optim), s)
    assert not any("reward" in c for c in comps(dpo))
    # DPO's reference: log-probs by the policy before training, a frozen copy only for the held-out evaluation
    assert [(r.component.split(" (")[0], r.phase) for r in dpo.rows if "reference" in r.component] == [
        ("reference policy weights", "evaluate")]
    gpt = tiny_gpt_shape(ModelConfig())
    rm = build_plan("rm", RMConfig(), Settings())
    assert _bytes(rm.rows)["reward model weights"] == 4 * (gpt.params + gpt.hidden)
    assert "logits and loss" not in comps(rm)  # a scalar head: no vocabulary logits
    # DPO sends chosen and rejected together: twice SFT's activations at the same batch and length
    sft = build_plan("sft", SFTConfig(), s)
    assert dpo.phase_bytes("train") == 2 * sft.phase_bytes("train")
    assert ppo.total == ppo.phase_bytes("static") + max(ppo.phase_bytes("train"), ppo.phase_bytes("generate"))


def test_dpo_plan_follows_the_loss(capsys) -> None:
    """A reference loss holds a frozen reference copy only after training, for the held-out accuracy;
    a reference-free loss (simpo, orpo) holds none and computes no reference log-probs."""
    s = Settings()
    sigmoid, simpo = build_plan("dpo", DPOConfig(), s), build_plan("dpo", DPOConfig(loss="simpo"), s)
    ref = [r for r in sigmoid.rows if r.phase == "evaluate"]
    assert len(ref) == 1 and ref[0].bytes == 4 * tiny_gpt_shape(ModelConfig()).params
    assert sigmoid.total == sigmoid.phase_bytes("static") + max(sigmoid.phase_bytes("train"), ref[0].bytes)
    assert any("by the policy itself" in n for n in sigmoid.notes)
    assert not any("reference" in r.component for r in simpo.rows)
    assert any("reference-free" in n for n in simpo.notes)
    assert not any(r.phase == "evaluate" for r in build_plan("dpo", DPOConfig(heldout_frac=0.0), s).rows)
    assert main(["plan", "dpo", "--set", "loss=simpo"]) == 0
    assert "loss simpo is reference-free" in capsys.readouterr().out
    assert main(["plan", "dpo"]) == 0
    assert "evaluation after training" in capsys.readouterr().out
    assert main(["plan", "dpo", "--set", "loss=nope"]) == 2


def test_lora_plan_from_a_local_config_json(tmp_path: Path) -> None:
    Qwen2Config(**QWEN_05B).save_pretrained(tmp_path)
    cfg = SFTConfig(model=str(tmp_path), lora=LoRAConfig(enabled=True, r=16))
    plan = build_plan("sft", cfg, Settings(dtype="bf16"))
    adapter = 24 * 16 * (1792 + 1024)
    assert _bytes(plan.rows) == {**_bytes(plan.rows), "policy weights": 2 * (494_032_768 + adapter),
                                 "policy gradients": 2 * adapter, "policy AdamW moments": 8 * adapter}


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    for bad in (Settings(processes=0), Settings(strategy="zero1"), Settings(dtype="fp16"),
                Settings(strategy="none", processes=2)):
        with pytest.raises(UserError):
            build_plan("sft", SFTConfig(), bad)
    with pytest.raises(UserError, match="no config.json"):
        load_shape(str(tmp_path))
    with pytest.raises(UserError, match="match no linear layer"):
        lora_params(tiny_gpt_shape(ModelConfig()), 8, ["q_proj"])
    with pytest.raises(UserError, match="plan knows"):
        build_plan("label-sim", SFTConfig(), Settings())


def test_cli_prints_table_and_json_and_infers_the_trainer(tmp_path: Path, capsys) -> None:
    assert main(["plan", "sft", "--processes", "2", "--strategy", "fsdp", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_bytes"] == build_plan("sft", SFTConfig(), Settings(processes=2, strategy="fsdp")).total
    assert d["estimate"] is True and "CUDA context" in d["leaves_out"]
    run = tmp_path / "run.yaml"
    run.write_text("policy: null\nreward_model: null\nminibatch: 8\n")
    assert main(["plan", "--config", str(run), "--dtype", "bf16", "--gradient-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "memory plan for `ppo`" in out and "total (peak)" in out and "estimate" in out
    run.write_text("max_len: 64\n")  # fits sft, rm, dpo and expert-iter: ambiguous
    assert main(["plan", "--config", str(run)]) == 2
    assert main(["plan", "sft", "--set", "optim.batch_size=oops"]) == 2


def test_unknown_architecture_falls_back_to_an_exact_meta_count() -> None:
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    c = GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      vocab_size=200, tie_word_embeddings=False)
    shape = shape_from_hf_config(c, "neox")
    assert shape.method == "meta-device count"
    real = AutoModelForCausalLM.from_config(c)
    assert shape.params == sum(p.numel() for p in real.parameters())
    assert lora_params(shape, 2, ["query_key_value"]) == 2 * 2 * (32 + 96)
