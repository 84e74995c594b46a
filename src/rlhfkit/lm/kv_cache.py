"""The key/value cache's name, across the transformers versions rlhfkit declares.

transformers 5.24 renamed the forward argument and output field `past_key_values` to `cache`
(the old name still works until 5.40, with a FutureWarning). rlhfkit hands a cache from one
forward to the next in `lm.shared_prompt` and through peft's prefix tuning, so it asks the
model which name it takes instead of assuming one.

peft 0.21 still speaks the old name. For prefix tuning that breaks in two places on 5.24:
- the sequence-classification head (the reward model) refuses to start ("Model does not
  support past key values which are required for prefix tuning": peft looks for
  `past_key_values` in the forward's signature);
- generation silently drops the prefix: peft looks for the cache under its old name, finds
  none, injects the prefix as `past_key_values` beside transformers' own empty `cache`, and
  transformers keeps `cache` and ignores the prefix.
`fit_prefix_to_cache_name` mends both on one model, and changes nothing where the base model
still takes `past_key_values`.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

import torch

OLD, NEW = "past_key_values", "cache"


@functools.cache
def _takes_new_name(forward_owner: type) -> bool:
    params = inspect.signature(forward_owner.forward).parameters
    return NEW in params and OLD not in params


def cache_name(model: Any) -> str:
    """The keyword under which `model`'s forward takes a key/value cache."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return NEW if _takes_new_name(type(base)) else OLD


def output_cache(out: Any) -> Any:
    """The key/value cache a forward returned (`out.cache` on transformers >= 5.24)."""
    if NEW in out:  # ModelOutput is a dict of the fields that are set
        return out[NEW]
    return out[OLD]


def fit_prefix_to_cache_name(peft_model: Any) -> Any:
    """`peft_model` (prefix tuning) with its cache handed over under the name its base model takes."""
    base = peft_model.get_base_model()
    if not _takes_new_name(type(base)):
        return peft_model
    base.register_forward_pre_hook(_rename_old_to_new, with_kwargs=True)
    if hasattr(peft_model, "base_model_prepare_inputs_for_generation"):  # causal LMs
        original = peft_model.base_model_prepare_inputs_for_generation

        def prepare(*args: Any, **kwargs: Any) -> dict:
            # peft's generation step reads and writes the old name; the pre-hook renames it back
            model_inputs = original(*args, **kwargs)
            if NEW in model_inputs:
                model_inputs[OLD] = model_inputs.pop(NEW)
            return model_inputs

        peft_model.base_model_prepare_inputs_for_generation = prepare
    if hasattr(peft_model, "_prefix_tuning_forward"):  # sequence classification
        peft_model._prefix_tuning_forward = types.MethodType(_seq_cls_prefix_forward, peft_model)
    return peft_model


def _rename_old_to_new(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if OLD in kwargs:
        old = kwargs.pop(OLD)
        if kwargs.get(NEW) is None:
            kwargs[NEW] = old
    return args, kwargs


def _seq_cls_prefix_forward(self: Any, input_ids: torch.Tensor | None = None,
                            inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
    """peft's forward for a prefix on a model whose forward takes the cache: the prefix's keys
    and values are the cache every position attends to (Li & Liang 2021, sec. 4.2)."""
    rows = (input_ids if input_ids is not None else inputs_embeds).shape[0]
    kwargs[NEW] = self.get_prompt(rows)
    return self.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)
