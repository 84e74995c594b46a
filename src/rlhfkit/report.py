"""Tables, plots and `report.md` for the quickstart and `rlhfkit eval`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from rlhfkit.logging import read_metrics

LABELS = {"sft": "SFT (reference)", "ppo": "PPO", "reinforce": "REINFORCE", "dpo": "DPO",
          "expert_iteration": "Expert iteration"}


def _label(name: str) -> str:
    if name.startswith("best_of_"):
        return f"Best-of-{name.split('_')[-1]}"
    return LABELS.get(name, name)


def methods_table(methods: dict[str, dict]) -> str:
    rows = ["| method | win-rate vs SFT (95% CI) | gold score | proxy (RM) score | KL to SFT (nats) |",
            "|---|---|---|---|---|"]
    for name, m in methods.items():
        lo, hi = m["winrate_ci"]
        rows.append(f"| {_label(name)} | {m['winrate_vs_sft']:.3f} [{lo:.3f}, {hi:.3f}] | {m['gold']:.3f} "
                    f"| {m['proxy']:.3f} | {m['kl']:.2f} |")
    return "\n".join(rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(curves: dict[str, Path], out: Path) -> Path:
    """Proxy score, gold score and KL per iteration for each online method."""
    plt = _plt()
    keys = [("rollout/score", "reward-model score"), ("rollout/gold", "gold score"), ("rollout/kl", "KL to SFT")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for name, path in curves.items():
        rows = read_metrics(path)
        for ax, (k, title) in zip(axes, keys):
            pts = [(r["step"], r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), label=_label(name))
            ax.set_title(title)
            ax.set_xlabel("iteration")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_sweep(sweep: Sequence[dict[str, Any]], curves: dict[float, Path], out: Path) -> Path:
    """Gold and proxy score against sqrt(KL): along training for each beta (lines) and at
    the end of each run (points), as in Gao et al. 2023, fig. 1."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
    for beta, path in curves.items():
        rows = [r for r in read_metrics(path) if "rollout/gold" in r]
        x = [math.sqrt(max(r["rollout/kl"], 0.0)) for r in rows]
        axes[0].plot(x, [r["rollout/score"] for r in rows], alpha=0.6, label=f"beta={beta:g}")
        axes[1].plot(x, [r["rollout/gold"] for r in rows], alpha=0.6, label=f"beta={beta:g}")
    xs = [math.sqrt(max(p["kl"], 0.0)) for p in sweep]
    axes[0].scatter(xs, [p["proxy"] for p in sweep], color="k", zorder=3, label="held-out eval")
    axes[1].scatter(xs, [p["gold"] for p in sweep], color="k", zorder=3)
    axes[0].set_title("proxy (reward model) score")
    axes[1].set_title("gold score")
    for ax in axes:
        ax.set_xlabel("sqrt(KL to SFT)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def overoptimization_point(sweep: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Where the gold score stops following the proxy: the KL of the best gold score, if a
    point at larger KL has a higher proxy score but a lower gold score; else None."""
    pts = sorted(sweep, key=lambda p: p["kl"])
    if len(pts) < 2:
        return None
    best = max(range(len(pts)), key=lambda i: pts[i]["gold"])
    later = pts[best + 1:]
    if later and any(p["proxy"] > pts[best]["proxy"] and p["gold"] < pts[best]["gold"] for p in later):
        return {"kl": pts[best]["kl"], "beta": pts[best]["beta"], "gold": pts[best]["gold"]}
    return None


def write_report(path: Path, summary: dict[str, Any], plots: dict[str, str]) -> None:
    from rlhfkit.runtime import atomic_write_text

    methods = summary["methods"]
    lines = ["# rlhfkit quickstart report", "",
             f"Embedded review task, seed {summary.get('seed', 0)}; the whole run took {summary['wall_s']:.0f} s.",
             "Every figure below was measured in this run; held-out prompts, one sample per prompt per method.", "",
             "## Methods compared", "", methods_table(methods), "",
             "Win-rate: a simulated labeler from the pool compares each method's response with the SFT policy's "
             "response to the same prompt (ties count 1/2). Gold: the labelers' true taste. Proxy: the reward model. "
             "KL: Monte-Carlo estimate per response (best-of-n: the closed form log n - (n-1)/n).", ""]
    if "reward_model" in summary:
        rm = summary["reward_model"]
        lines += ["## Reward model", "",
                  f"Held-out pairwise accuracy {rm.get('heldout_accuracy', float('nan')):.3f} "
                  f"(gold scorer on the same labels: {rm.get('gold_accuracy') or float('nan'):.3f}), "
                  f"ECE {rm.get('ece', float('nan')):.3f}, on {rm.get('n_heldout')} held-out comparisons.", ""]
    lines += ["## Training curves", "", f"![training curves]({plots['training']})", ""]
    sweep = summary.get("kl_sweep") or []
    if sweep:
        lines += ["## Reward over-optimization (KL sweep)", "",
                  "| beta | KL | proxy | gold |", "|---|---|---|---|"]
        lines += [f"| {'SFT (no RL)' if p['beta'] is None else format(p['beta'], 'g')} | {p['kl']:.2f} "
                  f"| {p['proxy']:.3f} | {p['gold']:.3f} |" for p in sorted(sweep, key=lambda p: p["kl"])]
        point = summary.get("overoptimization")
        lines += ["", (f"The gold score peaks at KL = {point['kl']:.2f} (beta = {point['beta']:g}); beyond it the "
                       "proxy score keeps rising while the gold score falls." if point else
                       "Within this sweep the gold score did not fall while the proxy rose: no over-optimization "
                       "point was reached."), "", f"![KL sweep]({plots['sweep']})", ""]
    lines += ["## Samples", ""]
    for name, m in methods.items():
        lines.append(f"### {_label(name)}")
        lines.append("")
        for s in m["samples"][:3]:
            prompt = s["prompt"].replace("`", "'")
            resp = s["response"].replace("`", "'").strip() or "(empty)"
            lines.append(f"- `{prompt}` -> `{resp}`")
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")
