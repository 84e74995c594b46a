"""What every offline method hands the shared training loop (`offline/train.py`), and the
one config all of them read.

A method is built from a dataset and the config into a `Method`: a model, a sampler of
training batches, a loss over one batch, and a way to act in the environment. The loop
owns the optimizer, the schedule, checkpoints, resume, logging and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch.nn as nn

from rlhfkit.config import F, RunConfig
from rlhfkit.ops.losses import LossOutput

METHODS = ("dt", "cdt", "bc", "pct-bc", "bc-safe", "hf-dt")


class Sampler(Protocol):
    def sample(self, batch_size: int) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Method:
    name: str
    model: nn.Module
    sampler: Sampler
    loss_fn: Callable[[Any], LossOutput]  # one batch from `sampler` -> loss
    policy: Callable[[], Any]  # -> an `offline.evaluate.Policy` acting with the model as it is now
    conditioned: bool = True  # told a target return (DT) or not (BC)
    uses_cost: bool = False  # told a target cost (CDT)
    saved: dict[str, Any] = field(default_factory=dict)  # what reloading needs: model config, normalizer


@dataclass
class OfflineConfig(RunConfig):
    """`rlhfkit offline train-dt | train-cdt` (and the baselines through --method)."""

    data: str = F("runs/offline-data/CartPole-v1", "dataset folder written by `rlhfkit offline collect`")
    mixture: str = F("medium-replay", "which mixture to train on: random, medium, medium-replay, medium-expert, expert")
    method: str = F("dt", "dt, cdt, bc, pct-bc (BC on the top pct of episodes by return), bc-safe "
                          "(BC on episodes under the cost threshold), hf-dt (transformers' DecisionTransformerModel)")
    steps: int = F(3000, "gradient steps")
    batch_size: int = F(64, "windows (or transitions, for BC) per step")
    lr: float = F(1e-4, "AdamW learning rate (Chen et al. 2021, table 8)")
    weight_decay: float = F(1e-4, "AdamW weight decay")
    warmup: int = F(300, "linear warmup steps")
    grad_clip: float = F(0.25, "gradient norm clip")
    context: int = F(20, "K: steps in a window")
    hidden: int = F(128, "transformer width (BC: two layers of 2 x hidden, 256 by default, as D4RL's BC)")
    layers: int = F(3, "transformer blocks")
    heads: int = F(1, "attention heads")
    dropout: float = F(0.1, "dropout")
    head: str = F("auto", "action head: auto (categorical for discrete actions; deterministic for the DT, "
                          "gaussian for the CDT), deterministic, gaussian")
    entropy_coef: float = F(0.1, "CDT/gaussian head: weight of the entropy bonus")
    pct: float = F(0.1, "pct-bc: share of the timesteps kept, best episodes first (Chen et al. 2021, sec. 5.3)")
    cost_threshold: float = F(0.0, "bc-safe: keep episodes whose cost is at most this (also the CDT's default target)")
    relabel: float = F(0.2, "CDT: share of training windows from return-relabelled views (0 turns relabelling off)")
    targets: list[float] = F([], "target returns to evaluate at (empty: five spanning the dataset's episode returns)")
    thresholds: list[float] = F([], "CDT: cost thresholds to evaluate at (empty: the 25th/50th/75th percentile of episode costs)")
    eval_episodes: int = F(10, "episodes per evaluation point")
    eval_every: int = F(0, "evaluate every N steps for the learning curve (0: only at the end)")
    checkpoint_every: int = F(1000, "save a resumable checkpoint every N steps")


@dataclass
class CDTConfig(OfflineConfig):
    """`rlhfkit offline train-cdt`: the same fields, the Constrained DT by default."""

    method: str = F("cdt", "cdt, or any method of `train-dt` (bc-safe needs --set cost_threshold=...)")
