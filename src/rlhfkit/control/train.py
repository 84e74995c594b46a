"""`rlhfkit control train`: preference RL on a Gymnasium task, with its report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rlhfkit.control.loop import (
    ControlConfig,
    make_labeler,
    train_preference_rl,
    train_true_reward,
)
from rlhfkit.control.queries import QUERY_KINDS
from rlhfkit.errors import UserError
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.runtime import RunDir, seed_everything

log = get_logger(__name__)


def plot_curve(path: Path, curve: list[dict], baseline: float | None, random_mean: float, title: str) -> None:
    """True return vs comparisons, with true-reward RL and the random policy as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["comparisons"] for p in curve]
    ys = np.asarray([p["true_return_mean"] for p in curve])
    sd = np.asarray([p["true_return_std"] for p in curve])
    ax.plot(xs, ys, marker="o", label="preference RL (learned reward)")
    ax.fill_between(xs, ys - sd, ys + sd, alpha=0.2)
    if baseline is not None:
        ax.axhline(baseline, color="k", linestyle="--", label="RL on true reward (same env steps)")
    ax.axhline(random_mean, color="gray", linestyle=":", label="random policy")
    ax.set_xlabel("comparisons labeled")
    ax.set_ylabel("true return (evaluation)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_train(cfg: ControlConfig) -> dict:
    if cfg.query not in QUERY_KINDS:
        raise UserError(f"--query {cfg.query!r}: use one of {', '.join(QUERY_KINDS)}")
    if cfg.comparisons < 2:
        raise UserError("--comparisons must be at least 2")
    seed_everything(cfg.seed)
    out = cfg.out or f"runs/control-{cfg.env}-{cfg.query}-s{cfg.seed}"
    cfg = dataclasses.replace(cfg, out=out)
    run = RunDir.create(out, cfg)
    labeler = make_labeler(cfg, out)
    from rlhfkit.control.agent import random_returns
    from rlhfkit.control.envs import make_env

    with MetricsLogger(run.path, cfg.log, resume=cfg.resume) as metrics:
        res = train_preference_rl(cfg, labeler, metrics, run_dir=run.path)
        rand = random_returns(make_env(cfg.env), 50, seed=30_000 + cfg.seed)
        base = train_true_reward(cfg, res["algo"], res["env_steps"]) if cfg.baseline else None
    final = res["final_returns"]
    summary = {
        "env": cfg.env, "query": cfg.query, "labeler": cfg.labeler, "seed": cfg.seed, "algo": res["algo"],
        "true_return_mean": float(final.mean()), "true_return_std": float(final.std()),
        "comparisons": len(res["learner"].data.mu), "reward_correlation": res["reward_correlation"],
        "random_return_mean": float(rand.mean()),
        "baseline_true_return_mean": float(base["final_returns"].mean()) if base else None,
        "baseline_true_return_std": float(base["final_returns"].std()) if base else None,
        "env_steps": res["env_steps"], "wall_s": res["wall_s"],
        "baseline_wall_s": base["wall_s"] if base else None,
        "curve": res["curve"],
    }
    b, r = summary["baseline_true_return_mean"], summary["random_return_mean"]
    if b is not None:
        summary["fraction_of_baseline"] = summary["true_return_mean"] / b if b else None
        summary["fraction_random_to_baseline"] = (summary["true_return_mean"] - r) / (b - r) if b != r else None
    run.write_summary(summary)
    plot_curve(run.path / "true_return_vs_comparisons.png", res["curve"], b, r,
               f"{cfg.env}, {cfg.query} queries, seed {cfg.seed}")
    res["agent"].save(str(run.path / "agent.zip"))
    log.info("true return %.1f +- %.1f after %d comparisons (true-reward RL %s, random %.1f); summary in %s",
             summary["true_return_mean"], summary["true_return_std"], summary["comparisons"],
             f"{b:.1f}" if b is not None else "skipped", r, run.path / "summary.json")
    return summary
