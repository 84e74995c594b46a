"""Offline datasets: episodes with rewards and costs, stored as one `.npz` per mixture.

An episode follows Minari's episode layout (Minari `EpisodeData`): T actions, rewards,
terminations and truncations, and T + 1 observations (the last one is where the episode
ended). Costs sit beside the rewards, as in DSRL's safe-RL datasets. A dataset folder holds

    dataset.json      env id, action space, cost wrapper, reference returns, per-mixture stats
    <mixture>.npz     the mixture's episodes, concatenated (see `_FIELDS`), with `lengths`

`terminations[-1]` says the episode reached a terminal state (the Hopper fell), and
`truncations[-1]` that a time limit cut it; at most one of them is true, and neither
only for an episode the recorder stopped early. `rlhfkit offline export-minari` writes
the same episodes as a Minari dataset.

Scores are D4RL-normalized (Fu et al. 2020): 100 * (R - R_random) / (R_expert - R_random),
with the reference returns measured when the dataset was collected; a cost is normalized by
the threshold it is held to (Liu et al. 2023, "Datasets and benchmarks for offline safe RL"):
an agent is safe when cost / threshold <= 1.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhfkit.errors import UserError
from rlhfkit.ops.advantages import discounted_returns
from rlhfkit.runtime import atomic_path, write_json

MIXTURES = ("random", "medium", "medium-replay", "medium-expert", "expert")


@dataclass(frozen=True)
class Episode:
    """One recorded episode (Minari's layout plus costs)."""

    observations: np.ndarray  # (T + 1, obs_dim) float32
    actions: np.ndarray  # (T, act_dim) float32, or (T,) int64 for a discrete action space
    rewards: np.ndarray  # (T,) float32
    costs: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool

    def __post_init__(self) -> None:
        t = len(self.actions)
        if t == 0:
            raise ValueError("an episode needs at least one step")
        if len(self.observations) != t + 1:
            raise ValueError(f"an episode of {t} actions needs {t + 1} observations, got {len(self.observations)}")
        for name in ("rewards", "costs", "terminations", "truncations"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"episode field {name!r} has {len(getattr(self, name))} steps, actions have {t}")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())

    @property
    def cost(self) -> float:
        return float(self.costs.sum())

    @property
    def terminated(self) -> bool:
        return bool(self.terminations[-1])

    @property
    def truncated(self) -> bool:
        return bool(self.truncations[-1])


def to_go(values: list[np.ndarray], gamma: float = 1.0) -> list[np.ndarray]:
    """Per-episode sums of what is still to come, sum_{k>=t} gamma^(k-t) x_k (the return-to-go
    and cost-to-go of Chen et al. 2021, sec. 3, and Liu et al. 2023, sec. 4.1). Each episode is
    its own row, so nothing flows across an episode end; terminated and truncated episodes are
    treated alike, because the Decision Transformer conditions on the return the episode
    actually collected (there is no bootstrapping from a value at a time limit)."""
    if not values:
        return []
    longest = max(len(v) for v in values)
    x = torch.zeros(len(values), longest, dtype=torch.float64)
    mask = torch.zeros_like(x)
    for i, v in enumerate(values):
        x[i, : len(v)] = torch.as_tensor(v, dtype=torch.float64)
        mask[i, : len(v)] = 1.0
    out = discounted_returns(x, mask, gamma)
    return [out[i, : len(v)].numpy().astype(np.float32) for i, v in enumerate(values)]


def normalized_score(ret: float | np.ndarray, random_return: float, expert_return: float) -> float | np.ndarray:
    """D4RL's normalized score: 0 is the random policy, 100 the expert (Fu et al. 2020, sec. 5)."""
    if expert_return == random_return:
        raise ValueError("the expert and random reference returns are equal: no scale to normalize by")
    return 100.0 * (np.asarray(ret, dtype=np.float64) - random_return) / (expert_return - random_return)


def normalized_cost(cost: float | np.ndarray, threshold: float) -> float | np.ndarray:
    """Cost over the threshold it must stay under; safe when <= 1 (DSRL's convention)."""
    if threshold <= 0:
        raise ValueError(f"a cost threshold must be positive, got {threshold}")
    return np.asarray(cost, dtype=np.float64) / threshold


@dataclass(frozen=True)
class References:
    """Reference returns for normalization, measured at collection time."""

    random_return: float
    expert_return: float

    def score(self, ret: float | np.ndarray) -> float | np.ndarray:
        return normalized_score(ret, self.random_return, self.expert_return)


@dataclass
class DatasetInfo:
    """What `dataset.json` says about every mixture in a dataset folder."""

    env_id: str
    discrete: bool
    obs_dim: int
    act_dim: int  # the number of actions for a discrete space
    max_episode_steps: int
    references: References
    cost: dict[str, Any] = field(default_factory=dict)  # the cost wrapper's name and settings
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    mixtures: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> stats
    meta: dict[str, Any] = field(default_factory=dict)  # behaviour policies, steps, timings

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "DatasetInfo":
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(data).__name__}")
        required = ("env_id", "discrete", "obs_dim", "act_dim", "max_episode_steps", "references")
        missing = [k for k in required if k not in data]
        if missing:
            raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
        refs = data["references"]
        try:
            references = References(float(refs["random_return"]), float(refs["expert_return"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: field 'references' needs numbers random_return and expert_return ({e})") from e
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown field(s) {', '.join(unknown)}")
        return cls(**{**data, "references": references})


@dataclass
class OfflineDataset:
    """The episodes of one mixture, with the folder's info."""

    info: DatasetInfo
    mixture: str
    episodes: list[Episode]

    def __post_init__(self) -> None:
        if not self.episodes:
            raise UserError(f"dataset {self.info.env_id}/{self.mixture} has no episodes")

    @property
    def returns(self) -> np.ndarray:
        return np.asarray([e.ret for e in self.episodes])

    @property
    def episode_costs(self) -> np.ndarray:
        return np.asarray([e.cost for e in self.episodes])

    @property
    def transitions(self) -> int:
        return sum(len(e) for e in self.episodes)

    def subset(self, keep: list[int] | np.ndarray, name: str) -> "OfflineDataset":
        """The same dataset restricted to the episodes at `keep` (%BC, BC-Safe)."""
        chosen = [self.episodes[int(i)] for i in keep]
        if not chosen:
            raise UserError(f"{self.info.env_id}/{self.mixture}: no episode passes the filter for {name}")
        return OfflineDataset(self.info, f"{self.mixture}:{name}", chosen)

    def stats(self) -> dict[str, Any]:
        r, c = self.returns, self.episode_costs
        return {"episodes": len(self.episodes), "transitions": self.transitions,
                "return_min": float(r.min()), "return_mean": float(r.mean()), "return_max": float(r.max()),
                "cost_min": float(c.min()), "cost_mean": float(c.mean()), "cost_max": float(c.max()),
                "terminated": int(sum(e.terminated for e in self.episodes)),
                "truncated": int(sum(e.truncated for e in self.episodes))}


_FIELDS = ("observations", "actions", "rewards", "costs", "terminations", "truncations")


def save_mixture(folder: str | Path, data: OfflineDataset) -> Path:
    """Write `<mixture>.npz` atomically and record the mixture's stats in `dataset.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data.mixture}.npz"
    arrays = {name: np.concatenate([getattr(e, name) for e in data.episodes]) for name in _FIELDS}
    arrays["lengths"] = np.asarray([len(e) for e in data.episodes], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    info = data.info
    info.mixtures[data.mixture] = data.stats()
    write_json(folder / "dataset.json", info.to_json())
    return path


def read_info(folder: str | Path) -> DatasetInfo:
    path = Path(folder) / "dataset.json"
    if not path.exists():
        raise UserError(f"{path}: not found; build the dataset with `rlhfkit offline collect --env ENV --out {folder}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e
    return DatasetInfo.from_json(data, str(path))


def load_mixture(folder: str | Path, mixture: str) -> OfflineDataset:
    """The episodes of `<folder>/<mixture>.npz`, checked field by field."""
    info = read_info(folder)
    path = Path(folder) / f"{mixture}.npz"
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in Path(folder).glob("*.npz"))) or "none"
        raise UserError(f"{path}: no such mixture (this folder has: {have})")
    arrays: dict[str, np.ndarray] = {}
    reading: str | None = None  # the field being read, for the error message
    try:
        with open(path, "rb") as f, np.load(f) as z:  # our `open`: a bad archive leaves no file open
            missing = [k for k in (*_FIELDS, "lengths") if k not in z.files]
            if missing:
                raise UserError(f"{path}: missing array(s) {', '.join(missing)}")
            for reading in (*_FIELDS, "lengths"):
                arrays[reading] = z[reading]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        what = f"field {reading!r}" if reading else "the archive"
        raise UserError(f"{path}: cannot read {what} ({type(e).__name__}: {e}); rebuild it with "
                        "`rlhfkit offline collect`") from e
    lengths = arrays["lengths"]
    if lengths.ndim != 1 or (lengths <= 0).any():
        raise UserError(f"{path}: field 'lengths' must list positive episode lengths")
    steps = int(lengths.sum())
    for name in ("actions", "rewards", "costs", "terminations", "truncations"):
        if len(arrays[name]) != steps:
            raise UserError(f"{path}: field {name!r} has {len(arrays[name])} rows; the lengths add up to {steps}")
    if len(arrays["observations"]) != steps + len(lengths):
        raise UserError(f"{path}: field 'observations' needs {steps + len(lengths)} rows (T + 1 per episode), "
                        f"has {len(arrays['observations'])}")
    for name in ("observations", "rewards", "costs"):
        if not np.isfinite(arrays[name]).all():
            raise UserError(f"{path}: field {name!r} must be finite")
    episodes, a, o = [], 0, 0
    for n in lengths.tolist():
        episodes.append(Episode(arrays["observations"][o: o + n + 1], arrays["actions"][a: a + n],
                                arrays["rewards"][a: a + n].astype(np.float32),
                                arrays["costs"][a: a + n].astype(np.float32),
                                arrays["terminations"][a: a + n].astype(bool),
                                arrays["truncations"][a: a + n].astype(bool)))
        a += n
        o += n + 1
    return OfflineDataset(info, mixture, episodes)
