"""Behaviour cloning and its filtered variants: the baselines the Decision Transformer and the
Constrained DT are compared with.

    bc       an MLP policy s -> a fitted to every transition of the dataset
    pct-bc   the same on the best episodes by return, `pct` of the dataset's timesteps
             (Chen et al. 2021, sec. 5.3, "Percentile Behavior Cloning")
    bc-safe  the same on the episodes whose total cost is within the threshold
             (Liu et al. 2023, "Datasets and benchmarks for offline safe RL", sec. 5: BC-Safe)

The policy sees the current state only: it is not told a target return or cost
(`Method.conditioned=False`). Transitions come from `WindowSampler` with a context of one
step: episodes are drawn in proportion to their length and the step uniformly inside, so every
transition is equally likely. States are standardized with the same `Normalizer` as the DT's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from rlhfkit.errors import UserError
from rlhfkit.offline.dataset import OfflineDataset
from rlhfkit.offline.method import Method, OfflineConfig
from rlhfkit.offline.sequence import Normalizer, TrajectoryBatch, WindowSampler
from rlhfkit.ops.actions import ACTION_LOSSES
from rlhfkit.ops.losses import LossOutput
from rlhfkit.types import batch_to

# The MLP is twice the transformer's width (256 at the default hidden=128): the two 256-unit
# hidden layers of OSRL's BC and of the D4RL BC baselines, and about as many parameters as
# the 3-layer, 128-wide DT has in its blocks' MLPs.
WIDTH_FACTOR = 2


@dataclass
class BCConfig:
    """The MLP policy's shape; saved beside its weights."""

    state_dim: int
    act_dim: int  # action dimensions, or the number of actions when discrete
    discrete: bool = False
    hidden: int = 256
    layers: int = 2  # hidden layers
    action_low: list[float] | None = None  # continuous bounds; None: an unbounded linear output
    action_high: list[float] | None = None

    def __post_init__(self) -> None:
        if (self.action_low is None) != (self.action_high is None):
            raise ValueError("give both action bounds or neither")
        if self.action_low is not None and len(self.action_low) != self.act_dim:
            raise ValueError(f"action bounds have {len(self.action_low)} dimensions, the actions {self.act_dim}")

    @property
    def head(self) -> str:
        """The policy head, a key of `ACTION_LOSSES`."""
        return "categorical" if self.discrete else "deterministic"

    def to_dict(self) -> dict:
        return asdict(self)


class BCPolicyNet(nn.Module):
    """s -> action logits (discrete) or a tanh-bounded action (continuous)."""

    def __init__(self, cfg: BCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = [cfg.state_dim] + [cfg.hidden] * cfg.layers
        parts: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            parts += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*parts, nn.Linear(sizes[-1], cfg.act_dim))
        bounded = not cfg.discrete and cfg.action_low is not None
        low = torch.tensor(cfg.action_low if bounded else [-1.0] * cfg.act_dim, dtype=torch.float32)
        high = torch.tensor(cfg.action_high if bounded else [1.0] * cfg.act_dim, dtype=torch.float32)
        self.bounded = bounded
        # a = center + radius * tanh(x) maps onto [low, high] (= high * tanh(x) for symmetric bounds)
        self.register_buffer("center", (high + low) / 2, persistent=False)
        self.register_buffer("radius", (high - low) / 2, persistent=False)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states (..., state_dim) standardized -> (..., act_dim)."""
        out = self.body(states)
        if self.bounded:
            return self.center + self.radius * torch.tanh(out)
        return out


def bc_loss(model: BCPolicyNet, batch: TrajectoryBatch) -> LossOutput:
    """The action loss of the policy head on one-step windows (B, 1, ...)."""
    batch = batch_to(batch, next(model.parameters()).device)
    assert batch.states.shape[1] == 1, "BC trains on windows of one step"
    head = model(batch.states)  # (B, 1, A)
    return ACTION_LOSSES[model.cfg.head](head, batch.actions, batch.mask)


class BCPolicy:
    """Acts with the MLP on the current state; target return and cost are ignored."""

    def __init__(self, model: BCPolicyNet, norm: Normalizer) -> None:
        self.model, self.norm = model, norm

    def reset(self, n: int, target_return: float, target_cost: float | None) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(torch.from_numpy(self.norm.states(obs)).to(device)).cpu()  # (n, A)
        self.model.train(was_training)
        if self.model.cfg.discrete:
            return out.argmax(-1).numpy()
        return out.numpy()

    def observe(self, actions: np.ndarray, rewards: np.ndarray, costs: np.ndarray, keep: np.ndarray) -> None:
        pass


def _check_head(data: OfflineDataset, cfg: OfflineConfig, name: str) -> None:
    allowed = ("auto", "categorical") if data.info.discrete else ("auto", "deterministic")
    if cfg.head not in allowed:
        raise UserError(f"{name} trains a {allowed[1]} head on this action space; "
                        f"got head={cfg.head!r} (use auto or {allowed[1]})")


def _build(data: OfflineDataset, cfg: OfflineConfig, name: str) -> Method:
    _check_head(data, cfg, name)
    info = data.info
    bounds = (None, None)
    if not info.discrete and info.action_low is not None and info.action_high is not None:
        bounds = ([float(x) for x in info.action_low], [float(x) for x in info.action_high])
    model_cfg = BCConfig(info.obs_dim, info.act_dim, info.discrete, hidden=WIDTH_FACTOR * cfg.hidden,
                         action_low=bounds[0], action_high=bounds[1])
    with torch.random.fork_rng(devices=[]):  # weights from cfg.seed, the global stream untouched
        torch.manual_seed(cfg.seed)
        model = BCPolicyNet(model_cfg)
    norm = Normalizer.fit(data)
    sampler = WindowSampler(data, context=1, norm=norm, seed=cfg.seed)
    return Method(name=name, model=model, sampler=sampler, loss_fn=lambda batch: bc_loss(model, batch),
                  policy=lambda: BCPolicy(model, norm), conditioned=False, uses_cost=False,
                  saved={"model": model_cfg.to_dict(), "normalizer": norm.to_dict(),
                         "episodes": len(data.episodes), "transitions": data.transitions})


def top_episodes(returns: np.ndarray, lengths: np.ndarray, pct: float) -> np.ndarray:
    """The episodes %BC keeps: the best by return, taken while their steps add up to at most
    `pct` of all steps, and at least the best one (Chen et al. 2021, sec. 5.3: "the top X% of
    timesteps in the dataset, ordered by episode returns"; the selection loop of their
    gym/experiment.py). Ties in return keep the dataset's order. Indices in dataset order."""
    if not 0 < pct <= 1:
        raise UserError(f"pct-bc: pct must be in (0, 1], got {pct}")
    budget = max(int(pct * lengths.sum()), 1)
    order = np.argsort(-returns, kind="stable")  # best first
    keep, steps = [int(order[0])], int(lengths[order[0]])
    for i in order[1:]:
        if steps + lengths[i] > budget:
            break
        keep.append(int(i))
        steps += int(lengths[i])
    return np.sort(np.asarray(keep))


def safe_episodes(costs: np.ndarray, threshold: float) -> np.ndarray:
    """The episodes BC-Safe keeps: total cost at most the threshold (Liu et al. 2023, sec. 5)."""
    return np.flatnonzero(costs <= threshold)


def build_bc(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    return _build(data, cfg, "bc")


def build_pct_bc(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    lengths = np.asarray([len(e) for e in data.episodes])
    keep = top_episodes(data.returns, lengths, cfg.pct)
    return _build(data.subset(keep, f"top{cfg.pct:g}"), cfg, "pct-bc")


def build_bc_safe(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    costs = data.episode_costs
    keep = safe_episodes(costs, cfg.cost_threshold)
    if len(keep) == 0:
        raise UserError(f"bc-safe: no episode of {data.info.env_id}/{data.mixture} has a total cost within "
                        f"cost_threshold={cfg.cost_threshold:g} (the lowest episode cost is {costs.min():g}); "
                        f"raise the threshold or collect safer episodes")
    return _build(data.subset(keep, f"cost<={cfg.cost_threshold:g}"), cfg, "bc-safe")


def load_bc_policy(saved: dict, state_dict: dict[str, torch.Tensor]) -> BCPolicy:
    """Rebuild a trained BC policy from `Method.saved` and the model's weights."""
    model = BCPolicyNet(BCConfig(**saved["model"]))
    model.load_state_dict(state_dict)
    return BCPolicy(model.eval(), Normalizer.from_dict(saved["normalizer"]))
