"""The Decision Transformer and the Constrained DT as `Method`s, the CDT's return relabelling,
and the table of every offline method by name.

The DT (Chen et al. 2021): windows of (R, s, a) with the return-to-go as recorded; the
action is regressed (MSE) or classified (cross-entropy).

The CDT (Liu et al. 2023): windows of (R, C, s, a); a Gaussian policy trained by likelihood
with an entropy bonus (sec. 4.2); and return relabelling (sec. 4.3): asked for a return no
episode under the cost budget reached, the model should do the best that stays within the
budget. So besides the episodes as recorded it trains on *relabelled views*: pick a budget
kappa, take tau*, the episode with the highest return among those costing at most kappa,
and show it with an initial return-to-go rho above R(tau*) (an infeasible target) and an
initial cost-to-go kappa. The sampler gives these views `cfg.relabel` of the windows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rlhfkit.offline.dataset import OfflineDataset
from rlhfkit.offline.dt import DecisionTransformer, DTConfig
from rlhfkit.offline.evaluate import DTPolicy
from rlhfkit.offline.method import Method, OfflineConfig
from rlhfkit.offline.sequence import Normalizer, View, WindowSampler
from rlhfkit.ops.actions import ACTION_LOSSES


def action_bounds(data: OfflineDataset) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """The env's action box and the symmetric scale the tanh head is stretched to."""
    info = data.info
    if info.discrete or info.action_low is None or info.action_high is None:
        return None, None, 1.0
    low, high = np.asarray(info.action_low, np.float32), np.asarray(info.action_high, np.float32)
    return low, high, float(np.max(np.abs(np.concatenate([low, high]))))


def resolve_head(requested: str, discrete: bool, stochastic: bool) -> str:
    if discrete:
        return "categorical"
    if requested == "auto":
        return "gaussian" if stochastic else "deterministic"
    if requested == "categorical":
        raise ValueError("head=categorical needs a discrete action space")
    return requested


def relabel_views(data: OfflineDataset, n: int, share: float, rng: np.random.Generator) -> list[View]:
    """The CDT's relabelled views (sec. 4.3), `n` of them, weighted to make up `share` of the
    sampling mass next to the recorded episodes (weight 1 each)."""
    returns, costs = data.returns, data.episode_costs
    lengths = np.asarray([len(e) for e in data.episodes], dtype=np.float64)
    views = []
    for _ in range(n):
        kappa = float(rng.uniform(costs.min(), costs.max()))
        within = np.flatnonzero(costs <= kappa)
        best = int(within[np.argmax(returns[within])])
        top = float(returns.max())
        rho = float(rng.uniform(returns[best], top)) if top > returns[best] else top
        views.append(View(best, rho - float(returns[best]), kappa - float(costs[best])))
    if not views or share <= 0:
        return []
    # recorded mass = sum(lengths); relabelled mass = w * sum(len(tau*)) -> pick w for `share`
    aug_len = sum(len(data.episodes[v.episode]) for v in views)
    w = share / (1.0 - share) * lengths.sum() / aug_len
    return [View(v.episode, v.return_offset, v.cost_offset, w) for v in views]


def _build_transformer(data: OfflineDataset, cfg: OfflineConfig, use_cost: bool) -> Method:
    info = data.info
    low, high, scale = action_bounds(data)
    head = resolve_head(cfg.head, info.discrete, stochastic=use_cost)
    model_cfg = DTConfig(state_dim=info.obs_dim, act_dim=info.act_dim, discrete=info.discrete, head=head,
                         use_cost=use_cost, context=cfg.context, max_timestep=info.max_episode_steps,
                         hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
                         action_scale=scale)
    model = DecisionTransformer(model_cfg)
    norm = Normalizer.fit(data)
    views = None
    if use_cost and cfg.relabel > 0:
        rng = np.random.default_rng(cfg.seed + 1)
        views = [View(i) for i in range(len(data.episodes))]
        views += relabel_views(data, len(data.episodes), cfg.relabel, rng)
    sampler = WindowSampler(data, cfg.context, norm, seed=cfg.seed, views=views)
    loss = ACTION_LOSSES[head]

    def loss_fn(batch):
        out = model(batch.states, batch.actions, batch.returns_to_go,
                    batch.costs_to_go if use_cost else None, batch.timesteps)
        return loss(out.head, batch.actions, batch.mask, log_std=out.log_std, entropy_coef=cfg.entropy_coef)

    return Method("cdt" if use_cost else "dt", model, sampler, loss_fn, lambda: DTPolicy(model, norm, low, high),
                  conditioned=True, uses_cost=use_cost,
                  saved={"model": model_cfg.to_dict(), "normalizer": norm.to_dict()})


def build_dt(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    return _build_transformer(data, cfg, use_cost=False)


def build_cdt(data: OfflineDataset, cfg: OfflineConfig) -> Method:
    return _build_transformer(data, cfg, use_cost=True)


def builders() -> dict[str, Callable[[OfflineDataset, OfflineConfig], Method]]:
    """Every offline method by name (the baselines are imported only when asked for)."""
    from rlhfkit.offline import bc, hf_peer

    return {"dt": build_dt, "cdt": build_cdt, "bc": bc.build_bc, "pct-bc": bc.build_pct_bc,
            "bc-safe": bc.build_bc_safe, "hf-dt": hf_peer.build_hf_dt}
