"""Weight sharding (FSDP full shard, DeepSpeed ZeRO-3) for the supervised loop: full
checkpoints, resume, and a full model handed back to the caller.

Under FSDP (Zhao et al. 2023, "PyTorch FSDP") and ZeRO stage 3 (Rajbhandari et al. 2020,
"ZeRO", section 5.3) each process holds only a shard of every weight. The algorithms read the
bare model after `fit` (evaluation, `save_model`), and checkpoints must be Hugging
Face-native, so:

- before sharding, `meta_copy` keeps a skeleton of the model whose parameters live on the
  meta device (no memory), with the same modules, names, ties and buffers;
- a checkpoint gathers the full state dict with accelerate's generic `get_state_dict` (the
  same call for FSDP and ZeRO-3), and the main process writes it with the skeleton's
  `save_pretrained` (so `config.json` names the model's own class, not FSDP's);
- the optimizer state: under FSDP gathered in full, keyed by parameter name, with torch's
  `torch.distributed.checkpoint.state_dict` API, and scattered back into the shards on
  resume; under ZeRO-3, DeepSpeed's own per-process partition files;
- when training ends, `restore_full` broadcasts the gathered weights from the main process
  into the skeleton and moves the skeleton's contents into the caller's model object, so
  `model` is an ordinary module holding the full trained weights on every process.

accelerate 1.15 selects FSDP only for GPU-like process groups, and counts one process for
DeepSpeed without a GPU; `make_accelerator` sets up both on a CPU (gloo), which is how the
tests run them.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger

log = get_logger(__name__)


def fsdp_requested() -> bool:
    """`accelerate launch` with an FSDP config sets this for every process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def deepspeed_requested() -> bool:
    """`accelerate launch` with a DeepSpeed config sets this for every process."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def make_accelerator(cpu: bool, mixed_precision: str) -> Accelerator:
    """`Accelerator(...)`, with a clear error where accelerate cannot build the FSDP plugin
    (FSDP1 looks for a GPU while it is constructed).

    DeepSpeed on a CPU (its CPU accelerator): `Accelerator(cpu=True)` would drop DeepSpeed for
    plain DDP, and without it accelerate finds no GPU backend and counts one process while
    DeepSpeed runs two; naming gloo gives both the same process group."""
    from accelerate.utils import InitProcessGroupKwargs

    try:
        if cpu and deepspeed_requested():
            acc = Accelerator(mixed_precision=mixed_precision, kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
        else:
            acc = Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    except RuntimeError as e:
        if fsdp_requested() and "no available devices" in str(e):
            raise UserError(f"FSDP: {e}. On CPU only FSDP2 runs: set `fsdp_version: 2` in the accelerate "
                            "config (configs/accelerate/fsdp.yaml does)") from e
        raise
    select_fsdp_on_cpu(acc)
    return acc


def select_fsdp_on_cpu(acc: Accelerator) -> None:
    """Turn a CPU (gloo) process group launched with an FSDP2 config into an FSDP run.

    accelerate 1.15 sets DistributedType.FSDP only for GPU-like groups and silently runs DDP
    on CPU. FSDP2 (`fully_shard`, DTensor) supports CPU and gloo, so we select it the way
    accelerate's own state does: on the accelerator state and on the process state it copies
    `distributed_type` from."""
    if not fsdp_requested() or acc.distributed_type not in (DistributedType.MULTI_CPU, DistributedType.FSDP):
        return
    if getattr(acc.state, "fsdp_plugin", None) is not None:
        return  # accelerate selected it (GPUs), or an earlier run in this process did
    from accelerate.state import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables the launcher set
    if plugin.fsdp_version != 2:
        raise UserError("FSDP on CPU needs FSDP2: set `fsdp_version: 2` in the accelerate config")
    if acc.state.mixed_precision != "no":
        plugin.set_mixed_precision(acc.state.mixed_precision)
    acc.state.fsdp_plugin = plugin
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    log.info("FSDP2 on CPU: %d processes over gloo", acc.num_processes)


def sharding(acc: Accelerator) -> str | None:
    """'fsdp' or 'zero3' where each process holds a shard of the weights, else None."""
    if acc.distributed_type == DistributedType.FSDP:
        return "fsdp"
    ds = acc.state.deepspeed_plugin
    if ds is not None and ds.zero_stage == 3:
        return "zero3"
    return None


def held_fraction(wrapped: torch.nn.Module) -> tuple[int, int]:
    """(parameter values this process holds, values in the model): the proof that it is sharded.
    FSDP2 parameters are DTensors (`to_local()` is the shard); ZeRO-3 ones keep the shard in
    `ds_tensor` and the full size in `ds_numel`."""
    held = total = 0
    for p in wrapped.parameters():
        if hasattr(p, "ds_tensor"):
            held, total = held + p.ds_tensor.numel(), total + p.ds_numel
        elif hasattr(p, "to_local"):
            held, total = held + p.to_local().numel(), total + p.numel()
        else:
            held, total = held + p.numel(), total + p.numel()
    return held, total


def log_held(acc: Accelerator, wrapped: torch.nn.Module, desc: str) -> None:
    held, whole = held_fraction(wrapped)
    log.info("%s: %s: process %d holds %d of %d parameter values", desc, sharding(acc), acc.process_index,
             held, whole)


def backward_units(wrapped: torch.nn.Module) -> list[torch.nn.Module]:
    """FSDP2 units, told to keep their gathered weights through the whole backward pass.

    A unit frees its gathered weights after its backward by default. The shared-prompt forward
    (`lm.shared_prompt`) runs each block twice (prompt, then responses on its key/value cache)
    and the prompt's backward comes after the responses' one, so it would read freed storage.
    Kept through backward, each call's gradient is reduce-scattered and accumulated into the
    shard as it completes; `reshard` frees the gathered weights once backward is done."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in wrapped.modules() if isinstance(m, FSDPModule)]
    for u in units:
        u.set_reshard_after_backward(False, recurse=False)
    return units


def reshard(units: list[torch.nn.Module]) -> None:
    """Free the gathered weights of every FSDP2 unit (after backward, before the optimizer step)."""
    for u in units:
        u.reshard()


def full_ndim(p: torch.Tensor) -> int:
    """A parameter's number of dimensions; a ZeRO-3 partitioned one (zero.Init) is flat, and
    keeps its real shape in `ds_shape`."""
    return len(getattr(p, "ds_shape", p.shape))


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose parameters are on the meta device (shapes, dtypes, ties and
    requires_grad kept; no memory). Buffers are copied for real: they do not train, are not
    sharded, and some (rotary tables) are not in the state dict."""
    memo: dict[int, Any] = {}
    for p in model.parameters():  # a ZeRO-3 partitioned parameter (zero.Init) keeps its shape in ds_shape
        meta = torch.empty(tuple(getattr(p, "ds_shape", p.shape)), dtype=p.dtype, device="meta")
        memo[id(p)] = torch.nn.Parameter(meta, requires_grad=p.requires_grad)
    return copy.deepcopy(model, memo)


def gather_weights(acc: Accelerator, wrapped: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict (names as in the unwrapped model) on the main process, {} or the
    same elsewhere. A collective: every process must call it."""
    return acc.get_state_dict(wrapped)


class SavesFull:
    """Something with `save_pretrained(path)` that writes the skeleton's class and config
    with gathered weights (what `save_checkpoint` calls for each model)."""

    def __init__(self, skeleton: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        self.skeleton, self.state_dict = skeleton, state_dict

    def save_pretrained(self, path: Any) -> None:
        self.skeleton.save_pretrained(path, state_dict=self.state_dict, safe_serialization=True)


def optimizer_state(acc: Accelerator, wrapped: torch.nn.Module, opt: torch.optim.Optimizer,
                    folder: Path) -> dict[str, Any]:
    """What a checkpoint's `trainer_state.pt` keeps of a sharded optimizer. A collective.

    FSDP: the full state keyed by parameter name (on the main process). ZeRO-3: DeepSpeed's
    optimizer keeps flat per-process partitions that its own `save_checkpoint` writes, one
    file per process, into `folder` (a sibling of the step's folder, written first); the
    trainer state then only names it."""
    if sharding(acc) == "zero3":
        wrapped.save_checkpoint(str(folder), tag="zero3")
        return {"zero3": folder.name}
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    return get_optimizer_state_dict(wrapped, _inner(opt), options=StateDictOptions(full_state_dict=True,
                                                                                      cpu_offload=True))


def load_optimizer_state(acc: Accelerator, wrapped: torch.nn.Module, opt: torch.optim.Optimizer,
                         state: dict[str, Any], checkpoints: Path) -> None:
    """Load what `optimizer_state` saved (every process read it) into the sharded optimizer."""
    if sharding(acc) == "zero3":
        if "zero3" not in state:
            raise UserError(f"{checkpoints}: the checkpoint was not written by a ZeRO-3 run; resume it the way "
                            "it was launched, or start a new run from its weights")
        wrapped.load_checkpoint(str(checkpoints / state["zero3"]), tag="zero3", load_optimizer_states=True,
                                load_lr_scheduler_states=False)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    if "zero3" in state or not all(isinstance(k, str) for k in state.get("state", {})):
        raise UserError(f"{checkpoints}: the checkpoint's optimizer state was not written by an FSDP run; "
                        "resume it the way it was launched, or start a new run from its weights")
    set_optimizer_state_dict(wrapped, _inner(opt), state, options=StateDictOptions(full_state_dict=True))


def prune_zero3(checkpoints: Path) -> None:
    """Remove DeepSpeed partition folders whose step folder `save_checkpoint` has pruned."""
    for d in checkpoints.glob("zero3-step-*"):
        if not (checkpoints / d.name.removeprefix("zero3-")).exists():
            shutil.rmtree(d, ignore_errors=True)


def _inner(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(opt, "optimizer", opt)  # accelerate's AcceleratedOptimizer wraps the torch one


@torch.no_grad()
def restore_full(acc: Accelerator, wrapped: torch.nn.Module, skeleton: torch.nn.Module,
                 model: torch.nn.Module) -> None:
    """Make the caller's `model` an ordinary module holding the full trained weights on every
    process: gather (main process), broadcast each parameter, fill the skeleton, and move the
    skeleton's contents into `model` (the sharded modules and their hooks are dropped)."""
    full = gather_weights(acc, wrapped)
    names = dict(skeleton.named_parameters())  # one name per parameter: ties stay shared
    fresh: dict[int, torch.nn.Parameter] = {}
    for name, p in names.items():
        if acc.is_main_process and name not in full:
            raise RuntimeError(f"the gathered state dict lacks {name}")
        t = full[name].to(acc.device, p.dtype) if acc.is_main_process else torch.empty(
            p.shape, dtype=p.dtype, device=acc.device)
        if acc.num_processes > 1:
            torch.distributed.broadcast(t, src=0)
        fresh[id(p)] = torch.nn.Parameter(t, requires_grad=p.requires_grad)
    for mod in skeleton.modules():
        for key, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[key] = fresh[id(p)]
    skeleton.to(acc.device)  # the buffers
    skeleton.train(model.training)  # the mode training left it in, as without sharding
    vars(model).clear()
    vars(model).update(vars(skeleton))
    model.__class__ = skeleton.__class__


def check_unsharded_optimizer_state(state: dict[str, Any]) -> None:
    """An unsharded run cannot load the name-keyed optimizer state a sharded run wrote."""
    if "zero3" in state or any(isinstance(k, str) for k in state.get("state", {})):
        raise UserError("the checkpoint's optimizer state was written by a sharded run (FSDP or ZeRO-3); "
                        "resume it under the same launch config, or start a new run from its weights")
