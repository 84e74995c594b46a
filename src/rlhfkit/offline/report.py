"""An offline run's plots and `report.md`: achieved against target return (does conditioning
work?), reward and cost against the cost threshold (does the CDT keep the budget?), and the
learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhfkit.logging import read_metrics
from rlhfkit.runtime import atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_targets(path: Path, points: list[dict], title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    x = [p["target_return"] for p in points]
    y = [p["return_mean"] for p in points]
    sd = [p["return_std"] for p in points]
    ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, label="achieved (mean +- sd)")
    ax.plot([min(x), max(x)], [min(x), max(x)], "k--", linewidth=1, label="achieved = target")
    ax.set_xlabel("target return (conditioning)")
    ax.set_ylabel("return achieved")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_thresholds(path: Path, points: list[dict], title: str) -> None:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = [p["threshold"] for p in points]
    a1.plot(x, [p["score_mean"] for p in points], marker="o")
    a1.set_xlabel("cost threshold")
    a1.set_ylabel("normalized reward")
    a2.plot(x, [p["norm_cost_mean"] for p in points], marker="o", color="C3")
    a2.axhline(1.0, color="k", linestyle="--", linewidth=1, label="budget (cost = threshold)")
    a2.set_xlabel("cost threshold")
    a2.set_ylabel("normalized cost (cost / threshold)")
    a2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_learning(path: Path, rows: list[dict], curve: list[dict], title: str) -> None:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    train = [r for r in rows if "train/loss" in r]
    a1.plot([r["step"] for r in train], [r["train/loss"] for r in train])
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    if curve:
        a2.plot([p["step"] for p in curve], [p["score_mean"] for p in curve], marker="o")
    a2.set_xlabel("step")
    a2.set_ylabel("normalized score (main target)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _table(points: list[dict], keys: list[str]) -> list[str]:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for p in points:
        lines.append("| " + " | ".join(f"{p[k]:.2f}" if isinstance(p.get(k), float) else str(p.get(k, ""))
                                       for k in keys) + " |")
    return lines


def write(folder: Path, summary: dict[str, Any]) -> None:
    title = f"{summary.get('method')} on {summary.get('env')}/{summary.get('mixture')}, seed {summary.get('seed')}"
    at = f" at target return {summary['main_target']:.1f}" if summary.get("main_target") is not None else ""
    lines = [f"# {title}", "", f"Normalized score{at} (D4RL formula, this dataset's reference returns; "
             f"the CDT's is its lowest over the thresholds): **{summary.get('score', float('nan')):.1f}**", ""]
    if summary.get("targets"):
        plot_targets(folder / "return_vs_target.png", summary["targets"], title)
        lines += ["## Return conditioning", "", f"Spearman(target, achieved) = {summary.get('spearman', 0):.2f}", "",
                  *_table(summary["targets"], ["target_return", "return_mean", "return_std", "score_mean"]),
                  "", "![](return_vs_target.png)", ""]
    if summary.get("thresholds"):
        plot_thresholds(folder / "cost_vs_threshold.png", summary["thresholds"], title)
        lines += ["## Cost budget", "", "Safe when the normalized cost (cost / threshold) is at most 1.", "",
                  *_table(summary["thresholds"], ["threshold", "return_mean", "score_mean", "cost_mean",
                                                  "norm_cost_mean"]), "", "![](cost_vs_threshold.png)", ""]
    if summary.get("point"):
        lines += ["## Evaluation", "", *_table([summary["point"]], ["return_mean", "return_std", "score_mean",
                                                                    "cost_mean"]), ""]
    metrics = folder / "metrics.jsonl"
    rows = read_metrics(metrics) if metrics.exists() else []
    if rows:
        plot_learning(folder / "learning_curve.png", rows, summary.get("curve", []), title)
        lines += ["## Learning curve", "", "![](learning_curve.png)", ""]
    atomic_write_text(folder / "report.md", "\n".join(lines))
