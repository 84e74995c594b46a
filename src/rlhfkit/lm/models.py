"""Language models: a tiny GPT built offline, or any Hugging Face or GGUF causal LM on disk.

- `train_tokenizer`: byte-level BPE trained on the corpus with `tokenizers`, wrapped
  as a `PreTrainedTokenizerFast` (so it saves and loads like any HF tokenizer).
- `build_tiny_gpt`: a GPT-2 architecture from a `ModelConfig`.
- `load_policy`: `AutoModelForCausalLM` + `AutoTokenizer` from a local folder.
- `reward_model_from`: the same backbone with a scalar head
  (`AutoModelForSequenceClassification`, num_labels=1), initialized from the SFT
  policy as in InstructGPT; its score is read at the last non-pad token.
- `with_lora` / `merged`: optional LoRA adapters through `peft` (Hu et al. 2021), merged
  back into plain weights before saving, so `final/` loads with no merge step.
- `with_prefix`: optional prefix tuning through `peft` (Li & Liang 2021). A prefix does not
  fold into the weights: `final/` then holds the prefix and, in `final/base/`, the frozen
  model; `load_policy` and `reward_model_from` load such folders for sampling and scoring.
- A GGUF file (`model.gguf`, or the alias `smollm2`) works wherever a folder does: the loaders
  hand it to `lm/gguf.py`, which dequantizes it into a plain model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from rlhfkit.config import F, ModelConfig
from rlhfkit.errors import UserError

EOS, PAD = "<|endoftext|>", "<|pad|>"
PREFIX_BASE = "base"  # a prefix-tuned model's folder keeps its frozen weights here


@dataclass
class LoRAConfig:
    """Low-rank adapters W + (alpha / r) B A on the chosen linear layers (Hu et al. 2021, eq. 3)."""

    enabled: bool = F(False, "train LoRA adapters instead of all weights (needs the `lora` extra: peft)")
    r: int = F(8, "adapter rank")
    alpha: float = F(16.0, "scaling numerator: the update is alpha / r * B A")
    dropout: float = F(0.05, "dropout on the adapter's input")
    target_modules: list[str] | None = F(None, "module names to adapt; None: peft's default for the architecture "
                                               "(GPT-2: c_attn)")


@dataclass
class PrefixConfig:
    """Prefix tuning (Li & Liang 2021): `num_virtual_tokens` trainable key/value vectors per layer
    that every sequence attends to, the model's own weights frozen. A prefix cannot be folded
    into the weights, so final/ holds the frozen base in `base/` and the prefix beside it."""

    enabled: bool = F(False, "train a prefix instead of the weights (needs the `lora` extra: peft)")
    num_virtual_tokens: int = F(16, "prefix length: key/value positions added to every layer")
    projection: bool = F(False, "reparameterize the prefix through a two-layer MLP while training (Li & Liang, sec. 4.3)")


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                   unk_token=None, padding_side="right")


def build_tiny_gpt(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return use_fused_kernels(GPT2LMHeadModel(config))


def use_fused_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """Swap GPT-2's tanh-approximate GELU, written as eight elementwise ops, for torch's single
    kernel of the same formula (outputs agree to ~1e-7). The saved config is unchanged."""
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    return model


def _check_dir(path: str | Path, what: str, need_config: bool = True) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{what} {p}: no such directory (expected a Hugging Face save_pretrained folder)")
    if need_config and not (p / "config.json").exists() and prefix_base(p) is None:
        raise UserError(f"{what} {p}: no config.json (expected a Hugging Face save_pretrained folder)")
    return p


def prefix_base(folder: Path) -> Path | None:
    """A prefix-tuned model's frozen base (`folder/base`), or None for a plain model folder."""
    base = folder / PREFIX_BASE
    if (folder / "adapter_config.json").exists() and (base / "config.json").exists():
        return base
    return None


def _saved_prefix_task(folder: Path) -> str:
    import json

    return str(json.loads((folder / "adapter_config.json").read_text()).get("task_type"))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    from rlhfkit.lm.gguf import is_gguf_spec, load_gguf_tokenizer

    if is_gguf_spec(path):
        return load_gguf_tokenizer(path)
    p = _check_dir(path, "tokenizer", need_config=False)
    try:
        tok = AutoTokenizer.from_pretrained(p)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load a tokenizer ({e})") from e
    return fit_special_tokens(tok)


def fit_special_tokens(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """EOS is where an answer ends: a chat template's end-of-turn token (`lm.chat.fit_end_of_turn`).
    Pad must not be EOS where another special token can serve: a scalar head reads a sequence's
    last non-pad token, which must be the EOS that ends the answer (SmolLM2 ships pad = EOS =
    `<|im_end|>`; its `<|endoftext|>` is unused in chat and becomes pad). Many causal LMs ship
    without a pad token: then EOS serves, as padding is always masked."""
    from rlhfkit.lm.chat import fit_end_of_turn

    fit_end_of_turn(tok)
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        spare = [t for t in (EOS, tok.unk_token) if t and t != tok.eos_token and t in tok.get_vocab()]
        tok.pad_token = spare[0] if spare else tok.eos_token
    return tok


def check_compatible(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, where: str | Path) -> None:
    """Refuse a tokenizer whose ids the model's embedding table cannot hold."""
    n_emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_emb:
        raise UserError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has "
                        f"only {n_emb} rows: tokenizer and model do not match")
    if tokenizer.eos_token_id is None:
        raise UserError(f"{where}: the tokenizer has no EOS token; set one so responses can end")


def load_policy(path: str | Path, dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    from rlhfkit.lm.gguf import is_gguf_spec, load_gguf

    if is_gguf_spec(path):
        return load_gguf(path, "causal", dtype)
    p = _check_dir(path, "model")
    tok = load_tokenizer(p)
    base = prefix_base(p)
    if base is not None and _saved_prefix_task(p) != "CAUSAL_LM":
        raise UserError(f"{p}: a prefix-tuned {_saved_prefix_task(p)} model, not a causal LM")
    try:
        model = AutoModelForCausalLM.from_pretrained(base or p, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load a causal LM ({e})") from e
    check_compatible(model, tok, p)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    model = use_fused_kernels(model)
    return (model if base is None else _with_saved_prefix(model, p)), tok


def reward_model_from(path: str | Path, dtype: torch.dtype | None = None
                      ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A scalar-head model: from a trained reward model, or a fresh head on a policy backbone."""
    from rlhfkit.lm.gguf import is_gguf_spec, load_gguf

    if is_gguf_spec(path):
        return load_gguf(path, "reward", dtype)
    p = _check_dir(path, "model")
    tok = load_tokenizer(p)
    base = prefix_base(p)
    if base is not None and _saved_prefix_task(p) != "SEQ_CLS":
        raise UserError(f"{p}: a prefix-tuned policy cannot start a reward model (its prefix belongs to the LM); "
                        f"start from {base}")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "newly initialized weights" notice is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base or p, num_labels=1, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load as a reward model ({e})") from e
    finally:
        hf_logging.set_verbosity(level)
    check_compatible(model, tok, p)
    model.config.pad_token_id = tok.pad_token_id
    model = use_fused_kernels(model)
    return (model if base is None else _with_saved_prefix(model, p)), tok


@contextmanager
def peft_quietly() -> Iterator[None]:
    """peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.24 deprecated: the
    FutureWarning is about peft's code, not the user's, so it is not shown to them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def with_lora(model: PreTrainedModel, cfg: LoRAConfig, task: str = "CAUSAL_LM") -> PreTrainedModel:
    """`model` with trainable adapters and its own weights frozen; itself when LoRA is off.
    `task` is peft's task type: CAUSAL_LM, or SEQ_CLS (the reward head is then trained whole)."""
    if not cfg.enabled:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise UserError("lora.enabled needs peft: pip install 'rlhfkit[lora]'") from e
    from transformers.pytorch_utils import Conv1D

    try:
        spec = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, task_type=task,
                          target_modules=list(cfg.target_modules) if cfg.target_modules else None,
                          # GPT-2's Conv1D stores its weight transposed (in, out)
                          fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()))
        with peft_quietly():
            return get_peft_model(model, spec)
    except ValueError as e:
        raise UserError(f"lora: {e} (set lora.target_modules to this model's linear layer names)") from e


def with_prefix(model: PreTrainedModel, cfg: PrefixConfig, task: str = "CAUSAL_LM",
                lora: LoRAConfig | None = None) -> PreTrainedModel:
    """`model` with a trainable prefix and its own weights frozen; itself when prefix tuning is off.
    For SEQ_CLS the reward head trains too."""
    if not cfg.enabled:
        return model
    if lora is not None and lora.enabled:
        raise UserError("lora.enabled and prefix.enabled are both on: choose one adapter")
    if cfg.num_virtual_tokens < 1:
        raise UserError(f"prefix.num_virtual_tokens must be at least 1, got {cfg.num_virtual_tokens}")
    try:
        from peft import PrefixTuningConfig, get_peft_model
    except ImportError as e:
        raise UserError("prefix.enabled needs peft: pip install 'rlhfkit[lora]'") from e
    from rlhfkit.lm.kv_cache import fit_prefix_to_cache_name

    spec = PrefixTuningConfig(task_type=task, num_virtual_tokens=cfg.num_virtual_tokens,
                              prefix_projection=cfg.projection, encoder_hidden_size=model.config.hidden_size)
    with peft_quietly():
        return fit_prefix_to_cache_name(get_peft_model(model, spec))


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute activations in the backward pass (non-reentrant). transformers 5.24 renamed
    `gradient_checkpointing_enable` to `activation_checkpointing_enable`; older releases have
    only the first."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def is_prefix_tuned(model: object) -> bool:
    """Whether `model` is a peft model with a prompt-learning adapter (prefix tuning)."""
    spec = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    return bool(getattr(spec, "is_prompt_learning", False))


def refuse_prefix_tuned(model: object, path: str | Path, desc: str) -> None:
    """Training starts from plain weights: a saved prefix is for sampling and evaluation."""
    if is_prefix_tuned(model):
        raise UserError(f"{desc}: {path} is prefix-tuned (a frozen prefix on {Path(path) / 'base'}); it can be "
                        f"sampled and evaluated, but training starts from plain weights: give {Path(path) / 'base'} "
                        "(with prefix.enabled for a new prefix) or a merged model")


def with_adapters(model: PreTrainedModel, path: str | Path, desc: str, lora: LoRAConfig, prefix: PrefixConfig,
                  task: str = "CAUSAL_LM") -> PreTrainedModel:
    """The model a supervised trainer trains: plain weights (not a saved prefix), with the LoRA
    adapters or the prefix its config asks for."""
    refuse_prefix_tuned(model, path, desc)
    return with_lora(with_prefix(model, prefix, task, lora), lora, task)


def merged(model: PreTrainedModel) -> PreTrainedModel:
    """Plain Hugging Face weights: LoRA adapters folded into the base (W + alpha / r * B A)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    """`save_pretrained` (safetensors) for the model and its tokenizer, written atomically."""
    from rlhfkit.runtime import atomic_dir

    with atomic_dir(Path(path)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if is_prefix_tuned(model):  # the adapter files above; the frozen weights in base/
            model.get_base_model().save_pretrained(tmp / PREFIX_BASE, safe_serialization=True)
            tokenizer.save_pretrained(tmp / PREFIX_BASE)
            _point_adapter_at_base(tmp / "adapter_config.json", Path(path).resolve() / PREFIX_BASE)


def _point_adapter_at_base(config_file: Path, base: Path) -> None:
    """peft's own loaders (`AutoPeftModelForCausalLM.from_pretrained(final)`) read the base's path
    from here; rlhfkit's loaders use base/ beside the adapter, so a moved folder still loads."""
    import json

    spec = json.loads(config_file.read_text())
    spec["base_model_name_or_path"] = str(base)
    config_file.write_text(json.dumps(spec, indent=2))


def _with_saved_prefix(model: PreTrainedModel, folder: Path) -> PreTrainedModel:
    """The base model with the prefix saved in `folder` (frozen)."""
    from peft import PeftModel

    from rlhfkit.lm.kv_cache import fit_prefix_to_cache_name

    with peft_quietly():
        return fit_prefix_to_cache_name(PeftModel.from_pretrained(model, folder))
