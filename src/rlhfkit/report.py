"""Tables, plots and `report.md` for the quickstart and `rlhfkit eval`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from rlhfkit.logging import read_metrics

LABELS = {"sft": "SFT (reference)", "ppo": "PPO", "reinforce": "REINFORCE", "grpo": "GRPO", "dpo": "DPO",
          "expert_iteration": "Expert iteration"}


def _label(name: str) -> str:
    if name.startswith("best_of_"):
        return f"Best-of-{name.split('_')[-1]}"
    return LABELS.get(name, name)


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def methods_table(methods: dict[str, dict]) -> str:
    """One row per method; n/a where the task has no gold scorer (gold, win-rate) or cannot tell
    what is on topic."""
    rows = ["| method | win-rate vs SFT (95% CI) | gold score | proxy (RM) score | KL to SFT (nats) | on-topic |",
            "|---|---|---|---|---|---|"]
    for name, m in methods.items():
        win = _num(m["winrate_vs_sft"], ".3f")
        if m["winrate_vs_sft"] is not None:
            lo, hi = m["winrate_ci"]
            win += f" [{lo:.3f}, {hi:.3f}]"
        rows.append(f"| {_label(name)} | {win} | {_num(m['gold'], '.3f')} | {m['proxy']:.3f} | {m['kl']:.2f} "
                    f"| {_num(m.get('on_topic'), '.2f')} |")
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


def plot_sweep(sweep: Sequence[dict[str, Any]], curves: dict[float, Path], out: Path,
               fit: dict[str, float] | None = None) -> Path:
    """Gold and proxy score against sqrt(KL): along training for each beta (lines), at the end
    of each run (points), and the fit of Gao et al.'s form to the points (`gao_rl_fit`), as in
    Gao et al. 2023, fig. 1."""
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
    if fit is not None and xs:
        grid = [max(xs) * 1.05 * i / 200 for i in range(201)]
        axes[1].plot(grid, [gao_curve(fit, d) for d in grid], "k--", lw=1,
                     label=f"fit: d({fit['alpha']:.2f} - {fit['beta']:.2f} log d)")
        axes[1].legend(fontsize=7)
    axes[0].set_title("proxy (reward model) score")
    axes[1].set_title("gold score")
    for ax in axes:
        ax.set_xlabel("sqrt(KL to SFT)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def rounds_table(rounds: Sequence[dict[str, Any]]) -> str:
    """One row per round of the labeling loop (`rlhfkit label rounds`): round 0 is the SFT policy."""
    rows = ["| round | gold score (95% CI) | KL to round 0 (nats) | answers | stored / acknowledged | lost "
            "| RM held-out accuracy |", "|---|---|---|---|---|---|---|"]
    for r in rounds:
        lo, hi = r["gold_ci"]
        rm = r.get("reward_model") or {}
        counts = f"{r['stored']} / {r['acknowledged']}" if "stored" in r else "-"
        rows.append(f"| {r['round']} | {r['gold']:.3f} [{lo:.3f}, {hi:.3f}] | {r['kl']:.2f} | {r.get('answers', '-')} "
                    f"| {counts} | {r.get('lost', '-')} | {_num(rm.get('heldout_accuracy'), '.3f')} |")
    return "\n".join(rows)


def plot_rounds(rounds: Sequence[dict[str, Any]], out: Path) -> Path:
    """Gold score (95% CI) and KL to the round-0 policy, round by round."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    x = [r["round"] for r in rounds]
    gold = [r["gold"] for r in rounds]
    err = [[g - r["gold_ci"][0] for g, r in zip(gold, rounds)], [r["gold_ci"][1] - g for g, r in zip(gold, rounds)]]
    axes[0].errorbar(x, gold, yerr=err, marker="o", capsize=3)
    axes[0].set_title("gold score (held-out prompts)")
    axes[1].plot(x, [r["kl"] for r in rounds], marker="o")
    axes[1].set_title("KL to the round-0 policy")
    for ax in axes:
        ax.set_xlabel("round")
        ax.set_xticks(x)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def overoptimization_point(sweep: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Where the gold score stops following the proxy: the sweep point with the best gold score,
    if a point at larger KL has a higher proxy score but a lower gold score; else None. Also
    -> `drop`: the best gold minus the gold of the largest-KL point (whose proxy is higher), and
    `interior`: whether a point of smaller KL than the peak exists too (the peak is not an end)."""
    pts = sorted(sweep, key=lambda p: p["kl"])
    if len(pts) < 2:
        return None
    best = max(range(len(pts)), key=lambda i: pts[i]["gold"])
    peak, last = pts[best], pts[-1]
    if any(p["proxy"] > peak["proxy"] and p["gold"] < peak["gold"] for p in pts[best + 1:]):
        return {"kl": peak["kl"], "beta": peak["beta"], "gold": peak["gold"], "interior": best > 0,
                "drop": peak["gold"] - last["gold"] if last["proxy"] > peak["proxy"] else 0.0}
    return None


def gao_rl_fit(sweep: Sequence[dict[str, Any]], gold0: float) -> dict[str, float] | None:
    """Least-squares fit of Gao et al. 2023's functional form for RL (eq. 2),
    gold(d) - gold0 = d (alpha - beta log d), with d = sqrt(KL) and gold0 the initial policy's gold
    score -> alpha, beta, R^2 and the peak: d* = exp(alpha / beta - 1), where the derivative
    alpha - beta (log d + 1) is zero. None with fewer than two points of positive KL."""
    pts = [(math.sqrt(p["kl"]), p["gold"] - gold0) for p in sweep if p["kl"] > 1e-6]
    if len(pts) < 2:
        return None
    # the model is linear in (alpha, beta): y = alpha * d + beta * (-d log d); normal equations
    u = [d for d, _ in pts]
    v = [-d * math.log(d) for d, _ in pts]
    y = [g for _, g in pts]
    suu, svv, suv = sum(a * a for a in u), sum(b * b for b in v), sum(a * b for a, b in zip(u, v))
    suy, svy = sum(a * c for a, c in zip(u, y)), sum(b * c for b, c in zip(v, y))
    det = suu * svv - suv * suv
    if abs(det) < 1e-12:
        return None
    alpha, beta = (suy * svv - svy * suv) / det, (svy * suu - suy * suv) / det
    mean = sum(y) / len(y)
    ss_res = sum((c - alpha * a - beta * b) ** 2 for a, b, c in zip(u, v, y))
    ss_tot = sum((c - mean) ** 2 for c in y)
    fit = {"alpha": alpha, "beta": beta, "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, "gold0": gold0}
    if beta > 0:
        d_star = math.exp(alpha / beta - 1.0)
        fit.update(kl_peak=d_star ** 2, gold_peak=gold0 + beta * d_star)  # d* (alpha - beta log d*) = beta d*
    return fit


def gao_curve(fit: dict[str, float], d: float) -> float:
    """The fitted gold score at d = sqrt(KL)."""
    return fit["gold0"] + (d * (fit["alpha"] - fit["beta"] * math.log(d)) if d > 0 else 0.0)


def write_report(path: Path, summary: dict[str, Any], plots: dict[str, str]) -> None:
    from rlhfkit.runtime import atomic_write_text

    methods = summary["methods"]
    lines = ["# rlhfkit quickstart report", "",
             f"Embedded review task, seed {summary.get('seed', 0)}; the whole run took {summary['wall_s']:.0f} s.",
             "Every figure below was measured in this run; held-out prompts, one sample per prompt per method.", "",
             "## Methods compared", "", methods_table(methods), "",
             "Win-rate: a simulated labeler from the pool compares each method's response with the SFT policy's "
             "response to the same prompt (ties count 1/2). Gold: the labelers' true taste. Proxy: the reward model. "
             "KL: Monte-Carlo estimate per response (best-of-n: the closed form log n - (n-1)/n). On-topic: the "
             "fraction of responses that name the item the prompt asks about.", ""]
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
        point, fit = summary.get("overoptimization"), summary.get("gao_fit")
        lines += ["", (f"The gold score peaks at KL = {point['kl']:.2f} (beta = {point['beta']:g}); beyond it the "
                       f"proxy score keeps rising while the gold score falls, by {point['drop']:.2f} at the largest "
                       "KL." if point else
                       "Within this sweep the gold score did not fall while the proxy rose: no over-optimization "
                       "point was reached.")]
        if fit:
            peak = (f"; it peaks at KL = {fit['kl_peak']:.1f} (gold {fit['gold_peak']:.2f})" if "kl_peak" in fit
                    else "")
            lines += ["", f"Gao et al.'s form for RL fitted to the points, gold(d) - gold(SFT) = d (alpha - beta "
                          f"log d) with d = sqrt(KL): alpha = {fit['alpha']:.3f}, beta = {fit['beta']:.3f}, "
                          f"R^2 = {fit['r2']:.2f}{peak}."]
        lines += ["", f"![KL sweep]({plots['sweep']})", ""]
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
