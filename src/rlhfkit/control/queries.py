"""Which pairs of segments to ask about (Christiano et al. 2017, sec. 2.2.4).

- `random`: pairs drawn uniformly from recent experience;
- `disagreement`: draw a pool `pool_factor` times larger, keep the pairs whose predicted
  preference varies most across the ensemble members;
- `mix`: half of each (the paper found disagreement sometimes hurts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from rlhfkit.control import QUERY_KINDS
from rlhfkit.control.envs import SpaceInfo
from rlhfkit.control.reward import RewardEnsemble
from rlhfkit.control.segments import Segment, Trajectory, sample_segments
from rlhfkit.feedback.selection import disagreement

QueryKind = Literal["random", "disagreement", "mix"]


@dataclass
class Query:
    """A pair of segments to compare; `id` is unique within a run."""

    id: int
    a: Segment
    b: Segment


def preference_variance(ensemble: RewardEnsemble, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Disagreement of candidate pairs a, b (N, k, F): the variance across members of the
    predicted P(a > b) = sigmoid(sum_t r_m(a_t) - sum_t r_m(b_t)). Returns (N,)."""
    ra, rb = ensemble.member_returns(a), ensemble.member_returns(b)  # (K, N) each
    return disagreement(torch.stack([ra.T, rb.T], dim=-1).double().numpy())  # (N, K, 2) -> (N,)


def _pairs(info: SpaceInfo, trajs: list[Trajectory], n: int, k: int,
           rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
    segs = sample_segments(info, trajs, 2 * n, k, rng)
    return list(zip(segs[:n], segs[n:]))


def select_queries(kind: str, n: int, info: SpaceInfo, trajs: list[Trajectory], k: int,
                   ensemble: RewardEnsemble, rng: np.random.Generator, pool_factor: int = 10,
                   first_id: int = 0) -> list[Query]:
    """n queries from `trajs` by the given rule."""
    if n <= 0:
        return []
    if kind not in QUERY_KINDS:
        raise ValueError(f"query rule {kind!r} is not one of {QUERY_KINDS}")
    n_active = {"random": 0, "disagreement": n, "mix": n // 2}[kind]
    chosen = _pairs(info, trajs, n - n_active, k, rng)
    if n_active:
        pool = _pairs(info, trajs, n_active * pool_factor, k, rng)
        a = np.stack([p[0].x for p in pool])  # (P, k, F)
        b = np.stack([p[1].x for p in pool])  # (P, k, F)
        score = preference_variance(ensemble, a, b)
        top = np.argsort(-score, kind="stable")[:n_active]
        chosen += [pool[i] for i in top]
    return [Query(first_id + i, a, b) for i, (a, b) in enumerate(chosen)]
