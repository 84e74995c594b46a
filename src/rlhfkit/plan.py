"""Memory plan: an estimate of the bytes each process needs, computed before any weights load.

Parameters are counted from a model's `config.json` alone (a closed formula for GPT-2 and the
Llama family: Llama, Mistral, Qwen2, Qwen3), or from the model class built on torch's meta device
(no memory) for any other architecture. From the counts:

- a trained model holds its weights, one gradient per trainable parameter, AdamW's two fp32
  moments, and, when the weights are bf16, an fp32 master copy of the trainable ones
  (the 2 + 2 + 12 bytes per parameter of Rajbhandari et al. 2020, "ZeRO", section 3);
- ZeRO-2 splits gradients, moments and master weights over the N processes; FSDP full
  sharding and ZeRO-3 split the weights as well. Frozen models (reference, reward model) are
  not wrapped by accelerate in the trainers, so every process holds a full copy;
- activations are a rough figure: per layer and token, about 34 x hidden values at 2 bytes
  (Korthikanti et al. 2022, "Reducing activation recomputation", without the attention-score
  term, which fused attention does not store); with gradient checkpointing, each layer keeps
  its input and one layer at a time holds the full set. The logits of a language-model loss
  are added on their own: at large vocabularies they are often the largest activation.

Left out: the CUDA context and kernels, allocator fragmentation and caching, temporary buffers
of collectives, FSDP's gathered layer, and the data. The generation KV cache is computed for
the trainers that sample, and counted at its peak, which does not overlap the training step.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.config import ModelConfig
from rlhfkit.errors import UserError

DTYPE_BYTES = {"fp32": 4, "bf16": 2}
STRATEGIES = ("none", "ddp", "zero2", "fsdp", "zero3")
ACTIVATION_VALUES_PER_TOKEN = 34  # x hidden, at 2 bytes per value (Korthikanti et al. 2022)
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
DEFAULT_LORA_TARGETS = {"gpt2": ["c_attn"], **{t: ["q_proj", "v_proj"] for t in LLAMA_FAMILY}}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about one causal language model."""

    source: str  # the folder read, or "embedded tiny GPT"
    model_type: str
    hidden: int
    layers: int
    vocab: int
    params: int  # the causal LM with its output head; tied embeddings counted once
    head_params: int  # parameters of an untied output head (0 when tied to the embeddings)
    kv_dim: int  # key/value heads x head dim: the KV cache per token and layer is 2 x kv_dim
    linears: tuple[tuple[str, int, int, int], ...]  # (module name, in, out, how many in the model)
    method: str  # "formula" or "meta-device count"


@dataclass(frozen=True)
class Settings:
    """How the run will be launched: the flags of `rlhfkit plan`."""

    processes: int = 1
    strategy: str = "ddp"
    dtype: str = "fp32"
    gradient_checkpointing: bool = False

    def check(self) -> None:
        if self.processes < 1:
            raise UserError(f"--processes must be at least 1, got {self.processes}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "none" and self.processes > 1:
            raise UserError("--strategy none means one process; use ddp, zero2, fsdp or zero3 with --processes > 1")
        if self.dtype not in DTYPE_BYTES:
            raise UserError(f"--dtype must be one of {list(DTYPE_BYTES)}, got {self.dtype!r}")


@dataclass
class Row:
    """One line of the plan: a component and its bytes in each process."""

    component: str
    bytes: int
    note: str = ""
    phase: str = "static"  # static (always held), train (the training step), generate (rollouts),
    # evaluate (after training: DPO's held-out reference copy)


@dataclass
class Plan:
    """The estimate for one command under one set of launch settings."""

    command: str
    settings: Settings
    models: dict[str, ModelShape]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def phase_bytes(self, phase: str) -> int:
        return sum(r.bytes for r in self.rows if r.phase == phase)

    @property
    def total(self) -> int:
        """Static bytes plus the largest of the training step, generation and the evaluation after
        training (they do not overlap)."""
        return self.phase_bytes("static") + max(self.phase_bytes(p) for p in ("train", "generate", "evaluate"))

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "settings": asdict(self.settings),
                "models": {k: asdict(v) for k, v in self.models.items()},
                "rows": [asdict(r) for r in self.rows], "total_bytes": self.total,
                "estimate": True, "notes": self.notes}


# ---------------------------------------------------------------- parameter counts


def _gpt2_shape(c: Any, source: str) -> ModelShape:
    h, L, V = c.n_embd, c.n_layer, c.vocab_size
    inner = c.n_inner or 4 * h
    per_layer = (2 * h) * 2 + (h * 3 * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h)
    params = V * h + c.n_positions * h + L * per_layer + 2 * h  # lm_head is tied to wte
    linears = (("c_attn", h, 3 * h, L), ("c_proj", h, h, L), ("c_fc", h, inner, L), ("c_proj", inner, h, L))
    return ModelShape(source, "gpt2", h, L, V, params, 0, h, linears, "formula")


def _llama_shape(c: Any, source: str) -> ModelShape:
    h, L, V, inner = c.hidden_size, c.num_hidden_layers, c.vocab_size, c.intermediate_size
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    hd = getattr(c, "head_dim", None) or h // heads
    qkv_bias = c.model_type == "qwen2" or bool(getattr(c, "attention_bias", False))
    o_bias = c.model_type != "qwen2" and bool(getattr(c, "attention_bias", False))
    mlp_bias = bool(getattr(c, "mlp_bias", False))
    q, kv = heads * hd, kv_heads * hd
    attn = h * q + 2 * h * kv + q * h + (q + 2 * kv) * qkv_bias + h * o_bias
    mlp = 3 * h * inner + (2 * inner + h) * mlp_bias
    norms = 2 * h + (2 * hd if c.model_type == "qwen3" else 0)
    tied = bool(getattr(c, "tie_word_embeddings", False))
    head = 0 if tied else V * h
    params = V * h + L * (attn + mlp + norms) + h + head
    linears = (("q_proj", h, q, L), ("k_proj", h, kv, L), ("v_proj", h, kv, L), ("o_proj", q, h, L),
               ("gate_proj", h, inner, L), ("up_proj", h, inner, L), ("down_proj", inner, h, L))
    return ModelShape(source, c.model_type, h, L, V, params, head, kv, linears, "formula")


def _meta_shape(c: Any, source: str) -> ModelShape:
    """Count exactly by building the model class on the meta device (no memory is allocated)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:  # torch's meta device, not accelerate's init_empty_weights, whose hook unties tied weights
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(c)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{source}: cannot build a causal LM of type {c.model_type!r} to count it ({e})") from e
    params = sum(p.numel() for p in model.parameters())
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    head = out_emb.weight.numel() if out_emb is not None and out_emb.weight is not in_emb.weight else 0
    counts: dict[tuple[str, int, int], int] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Linear, Conv1D)) and mod is not out_emb:
            i, o = (mod.in_features, mod.out_features) if isinstance(mod, torch.nn.Linear) else mod.weight.shape
            key = (name.rsplit(".", 1)[-1], int(i), int(o))
            counts[key] = counts.get(key, 0) + 1
    heads = getattr(c, "num_attention_heads", 1)
    hd = getattr(c, "head_dim", None) or c.hidden_size // heads
    kv = (getattr(c, "num_key_value_heads", None) or heads) * hd
    linears = tuple((n, i, o, k) for (n, i, o), k in counts.items())
    return ModelShape(source, c.model_type, c.hidden_size, c.num_hidden_layers, c.vocab_size, params, head, kv,
                      linears, "meta-device count")


def shape_from_hf_config(c: Any, source: str) -> ModelShape:
    """The shape of a transformers config: formula for known architectures, else a meta-device count."""
    if c.model_type == "gpt2":
        return _gpt2_shape(c, source)
    if c.model_type in LLAMA_FAMILY:
        return _llama_shape(c, source)
    return _meta_shape(c, source)


def tiny_gpt_shape(mc: ModelConfig) -> ModelShape:
    """The embedded tiny GPT that `build_tiny_gpt` makes from a ModelConfig (vocab: its BPE size)."""
    from types import SimpleNamespace

    c = SimpleNamespace(vocab_size=mc.vocab_size, n_positions=mc.n_positions, n_embd=mc.n_embd,
                        n_layer=mc.n_layer, n_head=mc.n_head, n_inner=None)  # build_tiny_gpt's GPT2Config
    return _gpt2_shape(c, "embedded tiny GPT")


def load_shape(path: str | None, default: ModelConfig | None = None) -> ModelShape:
    """Read `path/config.json`, or a GGUF file's metadata (never the weights); None: the embedded tiny
    GPT of `default`."""
    if path is None:
        return tiny_gpt_shape(default or ModelConfig())
    from rlhfkit.lm.gguf import gguf_config, is_gguf_spec

    if is_gguf_spec(path):  # the config from the file's metadata; counted as the float32 model it loads as
        return shape_from_hf_config(gguf_config(path), str(path))
    p = Path(path)
    if not (p / "config.json").is_file():
        raise UserError(f"{p}: no config.json (expected a Hugging Face save_pretrained folder)")
    from transformers import AutoConfig

    try:
        c = AutoConfig.from_pretrained(p)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{p}/config.json: cannot be read as a transformers config ({e})") from e
    return shape_from_hf_config(c, str(p))


def lora_params(shape: ModelShape, r: int, target_modules: list[str] | None) -> int:
    """Adapter parameters: r x (in + out) for every linear layer whose name is a target."""
    if r < 1:
        raise UserError(f"lora.r must be at least 1, got {r}")
    targets = target_modules or DEFAULT_LORA_TARGETS.get(shape.model_type)
    if not targets:
        raise UserError(f"no default LoRA targets known for {shape.model_type!r}: set lora.target_modules")
    hits = [(i, o, k) for n, i, o, k in shape.linears if n in targets]
    if not hits:
        names = sorted({n for n, *_ in shape.linears})
        raise UserError(f"lora.target_modules {targets} match no linear layer of {shape.source}; it has {names}")
    return sum(r * (i + o) * k for i, o, k in hits)


# ---------------------------------------------------------------- bytes


def trained_rows(name: str, params: int, trainable: int, s: Settings) -> list[Row]:
    """Weights, gradients, AdamW moments and (bf16) master weights of a trained model, per process."""
    wb, n = DTYPE_BYTES[s.dtype], s.processes
    shard_states = s.strategy in ("zero2", "fsdp", "zero3")
    shard_weights = s.strategy in ("fsdp", "zero3")
    tag = f", 1/{n} in each process" if n > 1 else ""

    def share(nbytes: int, sharded: bool) -> int:
        return math.ceil(nbytes / n) if sharded else nbytes

    rows = [Row(f"{name} weights ({s.dtype})", share(params * wb, shard_weights),
                f"{params:,} parameters" + (tag if shard_weights else "")),
            Row(f"{name} gradients ({s.dtype})", share(trainable * wb, shard_states),
                f"{trainable:,} trainable" + (tag if shard_states else "")),
            Row(f"{name} AdamW moments (2 x fp32)", share(trainable * 8, shard_states))]
    if s.dtype == "bf16":
        rows.append(Row(f"{name} fp32 master weights", share(trainable * 4, shard_states)))
    return rows


def frozen_row(name: str, params: int, s: Settings) -> Row:
    """A model used without gradients: its weights, whole in every process."""
    return Row(f"{name} weights ({s.dtype}, frozen)", params * DTYPE_BYTES[s.dtype],
               f"{params:,} parameters, not sharded")


def activation_bytes(shape: ModelShape, seqs: int, seq_len: int, s: Settings) -> int:
    """Rough activations kept for the backward pass of `seqs` sequences of `seq_len` tokens."""
    ab = DTYPE_BYTES[s.dtype]
    per_layer = seqs * seq_len * shape.hidden * ACTIVATION_VALUES_PER_TOKEN * ab // 2
    if s.gradient_checkpointing:
        return shape.layers * seqs * seq_len * shape.hidden * ab + per_layer
    return shape.layers * per_layer


def logits_bytes(shape: ModelShape, seqs: int, seq_len: int, s: Settings) -> int:
    """The logits in the model's dtype plus two fp32 tensors of that size for the loss and its gradient."""
    return seqs * seq_len * shape.vocab * (DTYPE_BYTES[s.dtype] + 8)


def kv_cache_bytes(shape: ModelShape, seqs: int, seq_len: int, s: Settings) -> int:
    """Keys and values of every layer for `seqs` sequences of `seq_len` tokens."""
    return 2 * shape.layers * shape.kv_dim * seqs * seq_len * DTYPE_BYTES[s.dtype]


def human(n: int) -> str:
    """Bytes in binary units: 1.5 GiB, 12.0 MiB."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.2f} {unit}"
        x /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- the trainers

TRAINERS = ("pretrain", "sft", "rm", "dpo", "kto", "ppo", "reinforce", "expert-iter")


def config_classes() -> dict[str, type]:
    """The config dataclass of each trainer `plan` knows."""
    from rlhfkit.algos.dpo import DPOConfig
    from rlhfkit.algos.expert_iteration import ExpertIterationConfig
    from rlhfkit.algos.kto import KTOConfig
    from rlhfkit.algos.ppo import PPOConfig
    from rlhfkit.algos.pretrain import PretrainConfig
    from rlhfkit.algos.reinforce import ReinforceConfig
    from rlhfkit.algos.reward_model import RMConfig
    from rlhfkit.algos.sft import SFTConfig

    return {"pretrain": PretrainConfig, "sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "kto": KTOConfig,
            "ppo": PPOConfig, "reinforce": ReinforceConfig, "expert-iter": ExpertIterationConfig}


def _scalar_head_params(shape: ModelShape) -> int:
    """A sequence classifier with one output: the backbone without the LM head, plus hidden -> 1."""
    return shape.params - shape.head_params + shape.hidden


def prefix_params(shape: ModelShape, n: int, projection: bool) -> int:
    """Prefix tuning: n key and value vectors per layer; with the reparameterization, an
    n x hidden embedding and a hidden -> hidden -> 2 L kv MLP instead (Li & Liang 2021, sec. 4.3)."""
    out = 2 * shape.layers * shape.kv_dim
    if not projection:
        return n * out
    h = shape.hidden
    return n * h + (h * h + h) + (h * out + out)


def _train_model(plan: Plan, name: str, shape: ModelShape, lora: Any, scalar: bool, extra: int = 0,
                 prefix: Any = None) -> None:
    params = _scalar_head_params(shape) if scalar else shape.params
    lora_on = lora is not None and lora.enabled
    prefix_on = prefix is not None and prefix.enabled
    adapter = lora_params(shape, lora.r, lora.target_modules) if lora_on else 0
    adapter += prefix_params(shape, prefix.num_virtual_tokens, prefix.projection) if prefix_on else 0
    frozen = lora_on or prefix_on
    trainable = adapter + (shape.hidden if scalar else 0) if frozen else params  # an RM's head trains whole
    if frozen:
        what = f"LoRA r={lora.r}" if lora_on else f"prefix of {prefix.num_virtual_tokens} tokens"
        plan.notes.append(f"{what}: {trainable:,} of {params + adapter:,} parameters train")
    plan.rows += trained_rows(name, params + adapter + extra, trainable + extra, plan.settings)


def _step_rows(plan: Plan, shape: ModelShape, seqs: int, seq_len: int, lm_logits: bool) -> None:
    s = plan.settings
    per = math.ceil(seqs / s.processes)
    gc = "with" if s.gradient_checkpointing else "without"
    plan.rows.append(Row(f"activations ({gc} gradient checkpointing)", activation_bytes(shape, per, seq_len, s),
                         f"rough: {per} sequences x {seq_len} tokens per process", "train"))
    if lm_logits:
        plan.rows.append(Row("logits and loss", logits_bytes(shape, per, seq_len, s),
                             f"{per} x {seq_len} x vocab {shape.vocab:,}", "train"))


def _dpo_reference(plan: Plan, cfg: Any, shape: ModelShape) -> None:
    """DPO's reference (`algos.dpo`): the training pairs' reference log-probs are computed once,
    by the policy itself, before the first step; the held-out evaluation after training loads a
    frozen copy of the initial policy. A reference-free loss (simpo, orpo) does neither."""
    from rlhfkit.ops.preference import pair_loss

    if not pair_loss(cfg.loss).needs_reference:
        plan.notes.append(f"loss {cfg.loss} is reference-free: no reference log-probs, no reference copy")
        return
    plan.notes.append("reference log-probs are computed once before the first step, by the policy itself: "
                      "no reference weights while training")
    if cfg.heldout_frac > 0:
        r = frozen_row("reference policy", shape.params, plan.settings)
        plan.rows.append(Row(r.component, r.bytes, r.note + "; loaded after training for the held-out accuracy",
                             "evaluate"))


def _supervised(command: str, cfg: Any, s: Settings) -> Plan:
    if command == "pretrain":
        shape, seq_len = load_shape(cfg.model.path, cfg.model), cfg.model.n_positions
    else:
        shape, seq_len = load_shape(cfg.policy if command in ("dpo", "kto") else cfg.model), cfg.max_len
    plan = Plan(command, s, {"policy" if command != "rm" else "reward model": shape})
    scalar = command == "rm"
    _train_model(plan, "reward model" if scalar else "policy", shape, getattr(cfg, "lora", None), scalar,
                 prefix=getattr(cfg, "prefix", None))
    pair = 2 if command in ("rm", "dpo") else 1  # chosen and rejected go through together
    _step_rows(plan, shape, cfg.optim.batch_size * pair, seq_len, lm_logits=not scalar)
    if command == "dpo":
        _dpo_reference(plan, cfg, shape)
    if command == "kto":
        plan.notes.append("reference log-probs (training and held-out examples) are computed once before the "
                          "first step, by the policy itself: no reference weights")
        plan.notes.append("KTO's mismatched pairs for its KL estimate z0 run without a graph: their activations "
                          "are not kept")
    if command == "expert-iter":
        rm = load_shape(cfg.reward_model)
        plan.models["reward model"] = rm
        plan.rows.append(frozen_row("reward model", _scalar_head_params(rm), s))
        _generate_rows(plan, shape, cfg.prompts_per_round * cfg.n, cfg.max_len, s)
    return plan


def _generate_rows(plan: Plan, shape: ModelShape, seqs: int, seq_len: int, s: Settings) -> None:
    plan.rows.append(Row("generation KV cache", kv_cache_bytes(shape, seqs, seq_len, s),
                         f"{seqs} sequences x {seq_len} tokens, if sampled in one batch", "generate"))


def _online(command: str, cfg: Any, s: Settings) -> Plan:
    policy, rm = load_shape(cfg.policy), load_shape(cfg.reward_model)
    plan = Plan(command, s, {"policy": policy, "reward model": rm})
    lora = getattr(cfg, "lora", None)  # the online trainers have no LoRA block yet
    head = policy.hidden + 1 if command == "ppo" else 0  # the value head shares the policy's backbone
    _train_model(plan, "policy" + (" + value head" if head else ""), policy, lora, False, extra=head)
    if lora is not None and lora.enabled:
        plan.notes.append("reference = the policy with its adapter disabled: no second copy")
    else:
        plan.rows.append(frozen_row("reference policy", policy.params, s))
    plan.rows.append(frozen_row("reward model", _scalar_head_params(rm), s))
    rc = cfg.rollout
    seq_len = max(rc.rm_max_len, rc.max_new_tokens)
    rollout = rc.batch_prompts * getattr(cfg, "samples_per_prompt", 1)
    step = cfg.minibatch if command == "ppo" else rollout
    _step_rows(plan, policy, step, seq_len, lm_logits=True)
    _generate_rows(plan, policy, rollout, seq_len, s)
    plan.rows.append(Row("rollout log-prob logits (no grad)",
                         rollout * seq_len * policy.vocab * (DTYPE_BYTES[s.dtype] + 4),
                         "policy and reference score the whole rollout batch in one forward", "generate"))
    plan.notes.append(f"sequence length taken as rollout.rm_max_len = {seq_len} tokens (prompt + response)")
    return plan


def build_plan(command: str, cfg: Any, s: Settings) -> Plan:
    """The memory plan of `command` run with the resolved config `cfg` under launch settings `s`."""
    s.check()
    if command not in TRAINERS:
        raise UserError(f"plan knows the trainers {list(TRAINERS)}, not {command!r}")
    plan = _online(command, cfg, s) if command in ("ppo", "reinforce") else _supervised(command, cfg, s)
    for name, shape in plan.models.items():
        if shape.source == "embedded tiny GPT":
            plan.notes.append(f"no {name} folder given: planned for the embedded tiny GPT (model.* shape)")
    return plan
