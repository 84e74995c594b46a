"""`rlhfkit imitate feature-matching` and `rlhfkit imitate maxent-irl` on tabular gridworlds.

    rlhfkit imitate maxent-irl --env gridworld-5x5 --demos 10 --out runs/maxent
    rlhfkit imitate feature-matching --env gridworld-10x10 --demos 10 --out runs/fm

Each writes config.yaml, metrics.jsonl (the per-iteration gap), reward.png (true vs learned
reward on the grid) and summary.json: `return_mean` (the learned policy's exact expected return
on the true reward), `expert_return`, `expert_transitions`, `feature_gap`, `policy_agreement`,
`normalized_score` (random policy 0, optimal 1), `iterations`, `seconds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tabular.demos import sample_demos, score_policy, score_reward
from rlhfkit.tabular.gridworld import GridTask, parse_env

log = get_logger(__name__)


@dataclass
class TabularIRLConfig(RunConfig):
    """Inverse RL from expert demonstrations on a gridworld with known dynamics."""

    env: str = F("gridworld-5x5", "gridworld-NxN (random one-hot colour features) or penguin")
    features: int = F(4, "reward features (colours) of a gridworld-NxN")
    env_seed: int = F(0, "seed of the gridworld's colours and true reward weights")
    demos: int = F(10, "expert demonstrations (trajectories of the horizon's length)")
    l2: float = F(0.1, "maxent-irl: L2 prior precision on the reward weights (per demo: l2 / demos)")
    reward_model: str = F("linear", "maxent-irl: linear or mlp")
    optimizer: str = F("lbfgs", "maxent-irl (linear): lbfgs or adam")
    lr: float = F(0.1, "maxent-irl: Adam step size (adam optimizer and the mlp)")
    max_iter: int = F(1000, "maximum iterations")
    tol: float = F(1e-6, "maxent-irl: stop when the relative L1 gradient is below this")
    eps: float = F(1e-3, "feature-matching: stop when ||mu_E - mu_bar|| <= eps ||mu_E||")


def _setup(cfg: TabularIRLConfig) -> tuple[GridTask, list, RunDir]:
    if cfg.demos < 1:
        raise UserError(f"--demos must be a positive number of trajectories, got {cfg.demos}")
    seed_everything(cfg.seed)
    task = parse_env(cfg.env, seed=cfg.env_seed, n_features=cfg.features)
    demos = sample_demos(task, cfg.demos, seed=cfg.seed)
    out = cfg.out or f"runs/irl-{time.strftime('%Y%m%d-%H%M%S')}"
    return task, demos, RunDir.create(out, cfg)


def _plot_rewards(path: Path, task: GridTask, learned: np.ndarray | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = task.size
    panels = [("true reward", task.mdp.R)] + ([("learned reward", learned)] if learned is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], panels):
        im = ax.imshow(np.asarray(r).reshape(n, n), cmap="viridis")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _summary(task: GridTask, cfg: TabularIRLConfig, score, extra: dict) -> dict:
    return {
        "env": cfg.env,
        "return_mean": score.return_learned_policy,
        "expert_return": score.expert_return,
        "random_return": score.random_return,
        "normalized_score": score.normalized,
        "expert_transitions": cfg.demos * task.horizon,
        "policy_agreement": score.policy_agreement,
        **extra,
    }


def run_maxent(cfg: TabularIRLConfig) -> dict:
    from rlhfkit.imitation.maxent_irl import MaxEntConfig, maxent_irl

    if cfg.reward_model not in ("linear", "mlp") or cfg.optimizer not in ("lbfgs", "adam"):
        raise UserError("reward_model must be linear or mlp, optimizer lbfgs or adam")
    task, demos, run = _setup(cfg)
    mcfg = MaxEntConfig(reward_model=cfg.reward_model, optimizer=cfg.optimizer, lr=cfg.lr, max_iter=cfg.max_iter,
                        tol=cfg.tol, l2=cfg.l2, seed=cfg.seed)
    with MetricsLogger(run.path, cfg.log) as metrics:
        t0 = time.perf_counter()
        res = maxent_irl(task.mdp, demos, task.horizon, mcfg,
                         on_iter=lambda it, m: metrics.log({"train/irl/feature_gap": m["feature_gap"]}, it))
        seconds = time.perf_counter() - t0
    score = score_reward(task, res.reward)
    summary = _summary(task, cfg, score, {
        "feature_gap": res.feature_gap[-1],
        "expert_return_learned_reward": score.expert_return_learned_reward,
        "best_return_learned_reward": score.best_return_learned_reward,
        "learned_weights": None if res.weights is None else res.weights.tolist(),
        "true_weights": task.true_weights.tolist(),
        "iterations": res.iterations, "converged": res.converged, "seconds": seconds,
    })
    _plot_rewards(run.path / "reward.png", task, res.reward, f"MaxEnt IRL, score {score.normalized:.3f}")
    run.write_summary(summary)
    log.info("maxent-irl %s: score %.4f (random 0, optimal 1), return %.3f vs expert %.3f, gap %.2e, %d iterations",
             cfg.env, score.normalized, score.return_learned_policy, score.expert_return, res.feature_gap[-1],
             res.iterations)
    return summary


def run_feature_matching(cfg: TabularIRLConfig) -> dict:
    from rlhfkit.imitation.feature_matching import mixture_value, projection_method

    task, demos, run = _setup(cfg)
    with MetricsLogger(run.path, cfg.log) as metrics:
        t0 = time.perf_counter()
        res = projection_method(task.mdp, demos, task.horizon, eps=cfg.eps, max_iter=cfg.max_iter,
                                on_iter=lambda it, m: metrics.log({"train/fm/mu_gap": m["mu_gap"],
                                                                   "train/fm/t": m["t"]}, it))
        seconds = time.perf_counter() - t0
    score = score_policy(task, res.policies[res.best])
    mixture_scores = [score_policy(task, p).return_learned_policy for p in res.policies]
    summary = _summary(task, cfg, score, {
        "feature_gap": res.gap[res.best],
        "mu_gap_per_iteration": res.gap,
        "t_per_iteration": res.t,
        "mixture_return": mixture_value(res, mixture_scores),
        "iterations": res.iterations, "converged": res.converged, "seconds": seconds,
    })
    learned = task.mdp.features @ res.weights
    _plot_rewards(run.path / "reward.png", task, learned, f"projection method, score {score.normalized:.3f}")
    run.write_summary(summary)
    log.info("feature-matching %s: score %.4f, return %.3f vs expert %.3f, ||mu - mu_E|| %.3g, %d iterations",
             cfg.env, score.normalized, score.return_learned_policy, score.expert_return, res.gap[res.best],
             res.iterations)
    return summary

