"""`rlhfkit imitate bc` and `rlhfkit imitate dagger` on Gymnasium environments.

    rlhfkit imitate bc --env CartPole-v1 --demos 25 --out runs/bc
    rlhfkit imitate dagger --env CartPole-v1 --demos 1000 --out runs/dagger

Each writes config.yaml, metrics.jsonl, policy.pt, returns.png and summary.json
(`return_mean`, `expert_return`, `expert_transitions`, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.imitation.bc import (
    BCConfig,
    collect_demos,
    evaluate_policy,
    make_env,
    train_bc,
)
from rlhfkit.imitation.dagger import DAggerConfig, dagger
from rlhfkit.imitation.experts import make_expert
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.runtime import RunDir, seed_everything

log = get_logger(__name__)


@dataclass
class ImitateEnvConfig(RunConfig):
    """What BC and DAgger share: the environment, the expert and the evaluation."""

    env: str = F("CartPole-v1", "Gymnasium environment id (discrete actions)")
    expert: str = F("ppo", "ppo: SB3 PPO trained on the true reward (cached); linear: scripted CartPole controller")
    expert_seed: int = F(0, "which cached PPO expert to use (its training seed)")
    eval_episodes: int = F(20, "greedy episodes to score the learner and the expert")


@dataclass
class ImitateBCConfig(ImitateEnvConfig):
    """Behaviour cloning from an expert's first `demos` transitions on a Gymnasium env."""

    demos: int = F(25, "expert transitions to clone (consecutive, episode after episode)")
    bc: BCConfig = F(BCConfig(), "the behaviour-cloning learner")


@dataclass
class ImitateDAggerConfig(ImitateEnvConfig):
    """DAgger with at most `demos` expert-labelled transitions on a Gymnasium env."""

    demos: int = F(1000, "budget of expert-labelled transitions, first-round demonstrations included")
    dagger: DAggerConfig = F(DAggerConfig(), "rounds, beta schedule and the learner")


def _n_actions(env_id: str) -> int:
    env = make_env(env_id)
    n = int(env.action_space.n)
    env.close()
    return n


def _check(cfg: ImitateBCConfig | ImitateDAggerConfig) -> Any:
    if cfg.demos < 1:
        raise UserError(f"--demos must be a positive number of transitions, got {cfg.demos}")
    if cfg.eval_episodes < 1:
        raise UserError(f"eval_episodes must be at least 1, got {cfg.eval_episodes}")
    env = make_env(cfg.env)
    if not hasattr(env.action_space, "n"):
        raise UserError(f"{cfg.env} has a continuous action space; BC and DAgger here need discrete actions")
    env.close()
    return make_expert(cfg.expert, cfg.env, cfg.expert_seed)


def _plot(path: Path, learner: np.ndarray, expert: np.ndarray, title: str, curve: list[dict[str, float]] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 2 if curve else 1
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.5), squeeze=False)
    ax = axes[0, 0]
    ax.plot(expert, "o-", label=f"expert (mean {expert.mean():.1f})")
    ax.plot(learner, "s-", label=f"learner (mean {learner.mean():.1f})")
    ax.set_xlabel("evaluation episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend()
    if curve:
        ax = axes[0, 1]
        pts = [(r["expert_transitions"], r["eval/return_mean"]) for r in curve if "eval/return_mean" in r]
        if pts:
            ax.plot(*zip(*pts), "o-")
        ax.set_xlabel("expert-labelled transitions")
        ax.set_ylabel("learner return")
        ax.set_title("DAgger rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _finish(run: RunDir, cfg: Any, method: str, policy: Any, n_labels: int, expert: Any, t0: float,
            extra: dict[str, Any], curve: list[dict[str, float]] | None = None) -> dict[str, Any]:
    eval_seed = 1_000_000 + cfg.seed * 1000
    learner_returns = evaluate_policy(policy, cfg.env, cfg.eval_episodes, seed=eval_seed)
    expert_returns = evaluate_policy(expert, cfg.env, cfg.eval_episodes, seed=eval_seed)
    policy.save(run.path / "policy.pt")
    _plot(run.path / "returns.png", learner_returns, expert_returns, f"{method} on {cfg.env}", curve)
    summary = {
        "method": method, "env": cfg.env, "expert": cfg.expert,
        "return_mean": float(learner_returns.mean()), "return_std": float(learner_returns.std()),
        "expert_return": float(expert_returns.mean()), "expert_transitions": int(n_labels),
        "eval_episodes": cfg.eval_episodes, "seconds": round(time.time() - t0, 2), **extra,
    }
    run.write_summary(summary)
    log.info("%s on %s: return %.1f (expert %.1f) from %d expert transitions -> %s", method, cfg.env,
             summary["return_mean"], summary["expert_return"], n_labels, run.path)
    return summary


def _out(cfg: Any, name: str) -> str:
    return cfg.out or f"runs/imitate-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_bc(cfg: ImitateBCConfig) -> dict[str, Any]:
    t0 = time.time()
    seed_everything(cfg.seed)
    expert = _check(cfg)
    run = RunDir.create(_out(cfg, "bc"), cfg)
    obs, actions = collect_demos(expert, cfg.env, cfg.demos, seed=cfg.seed * 1000)
    policy, fit = train_bc(obs, actions, int(_n_actions(cfg.env)), cfg.bc, seed=cfg.seed)
    with MetricsLogger(run.path, cfg.log) as metrics:
        metrics.log({"train/bc/nll": fit["nll"], "train/bc/accuracy": fit["accuracy"]}, step=cfg.bc.steps)
    return _finish(run, cfg, "bc", policy, len(actions), expert, t0, {"train_accuracy": fit["accuracy"]})


def run_dagger(cfg: ImitateDAggerConfig) -> dict[str, Any]:
    t0 = time.time()
    seed_everything(cfg.seed)
    expert = _check(cfg)
    run = RunDir.create(_out(cfg, "dagger"), cfg)
    cfg.dagger.budget = cfg.demos
    with MetricsLogger(run.path, cfg.log) as metrics:
        result = dagger(expert, cfg.env, cfg.dagger, seed=cfg.seed,
                        on_round=lambda i, row: metrics.log({f"dagger/{k}": v for k, v in row.items()}, step=i))
    return _finish(run, cfg, "dagger", result.policy, result.expert_transitions, expert, t0,
                   {"rounds": cfg.dagger.rounds}, curve=result.history)
