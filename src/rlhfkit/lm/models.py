"""Language models: a tiny GPT built offline, or any Hugging Face causal LM on disk.

- `train_tokenizer`: byte-level BPE trained on the corpus with `tokenizers`, wrapped
  as a `PreTrainedTokenizerFast` (so it saves and loads like any HF tokenizer).
- `build_tiny_gpt`: a GPT-2 architecture from a `ModelConfig`.
- `load_policy`: `AutoModelForCausalLM` + `AutoTokenizer` from a local folder.
- `reward_model_from`: the same backbone with a scalar head
  (`AutoModelForSequenceClassification`, num_labels=1), initialized from the SFT
  policy as in InstructGPT; its score is read at the last non-pad token.
- `with_lora` / `merged`: optional LoRA adapters through `peft` (Hu et al. 2021), merged
  back into plain weights before saving, so `final/` loads with no merge step.
"""

from __future__ import annotations

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


@dataclass
class LoRAConfig:
    """Low-rank adapters W + (alpha / r) B A on the chosen linear layers (Hu et al. 2021, eq. 3)."""

    enabled: bool = F(False, "train LoRA adapters instead of all weights (needs the `lora` extra: peft)")
    r: int = F(8, "adapter rank")
    alpha: float = F(16.0, "scaling numerator: the update is alpha / r * B A")
    dropout: float = F(0.05, "dropout on the adapter's input")
    target_modules: list[str] | None = F(None, "module names to adapt; None: peft's default for the architecture "
                                               "(GPT-2: c_attn)")


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
    if need_config and not (p / "config.json").exists():
        raise UserError(f"{what} {p}: no config.json (expected a Hugging Face save_pretrained folder)")
    return p


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    p = _check_dir(path, "tokenizer", need_config=False)
    try:
        tok = AutoTokenizer.from_pretrained(p)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load a tokenizer ({e})") from e
    if tok.pad_token_id is None:
        # Many causal LMs ship without a pad token; padding is always masked, so EOS serves.
        tok.pad_token = tok.eos_token
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
    p = _check_dir(path, "model")
    tok = load_tokenizer(p)
    try:
        model = AutoModelForCausalLM.from_pretrained(p, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load a causal LM ({e})") from e
    check_compatible(model, tok, p)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return use_fused_kernels(model), tok


def reward_model_from(path: str | Path, dtype: torch.dtype | None = None
                      ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A scalar-head model: from a trained reward model, or a fresh head on a policy backbone."""
    p = _check_dir(path, "model")
    tok = load_tokenizer(p)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "newly initialized weights" notice is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(p, num_labels=1, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load as a reward model ({e})") from e
    finally:
        hf_logging.set_verbosity(level)
    check_compatible(model, tok, p)
    model.config.pad_token_id = tok.pad_token_id
    return use_fused_kernels(model), tok


def with_lora(model: PreTrainedModel, cfg: LoRAConfig, task: str = "CAUSAL_LM") -> PreTrainedModel:
    """`model` with trainable adapters and its own weights frozen; itself when LoRA is off.
    `task` is peft's task type: CAUSAL_LM, or SEQ_CLS (the reward head is then trained whole)."""
    if not cfg.enabled:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise UserError("lora.enabled needs peft: pip install 'rlhfkit[lora]'") from e
    try:
        spec = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, task_type=task,
                          target_modules=list(cfg.target_modules) if cfg.target_modules else None)
        return get_peft_model(model, spec)
    except ValueError as e:
        raise UserError(f"lora: {e} (set lora.target_modules to this model's linear layer names)") from e


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
