"""Dueling bandits on K Bradley-Terry items: comparisons to find the Condorcet winner, and regret.

Identification: every strategy asks a simulated BT labeler until the same anytime Hoeffding
certificate (confidence 1 - delta) names an item that beats all others; printed are the median
comparisons over seeds, how often the certified item was the true Condorcet winner, and the ratio
to uniform round-robin. Utilities are 0, 0.3, ..., 0.3 (K - 1), shuffled per seed (the top two
items differ by P = sigmoid(0.3) = 0.574).

Regret: textbook RUCB (alpha = 0.51) and Double Thompson Sampling against round-robin for a fixed
budget; the cumulative regret curves go to dueling_regret.png.

    python benchmarks/dueling_bandits.py --seeds 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlhfkit.aggregation.dueling import RUCB, BTLabeler, DoubleTS, RoundRobin, run_duels


def identification(K: int, seeds: int, delta: float, budget: int, spacing: float, with_dts: bool) -> None:
    makers = {
        "round-robin": lambda rng: RoundRobin(K, rng),
        "rucb (delta radius)": lambda rng: RUCB(K, rng, delta=delta),
    }
    if with_dts:  # a regret minimizer: its Thompson-sampled challenger rarely probes weak items
        makers["dts (no self-duels)"] = lambda rng: DoubleTS(K, rng, self_duels=False)
    results: dict[str, list[tuple[int, bool]]] = {name: [] for name in makers}
    for seed in range(seeds):
        u = np.random.default_rng(seed).permutation(np.arange(K) * spacing)
        for name, make in makers.items():
            rng = np.random.default_rng(10_000 + seed)
            run = run_duels(make(rng), BTLabeler(u, rng), budget, delta=delta)
            results[name].append((run.comparisons if run.winner is not None else budget,
                                  run.winner == int(np.argmax(u))))
    base = np.median([c for c, _ in results["round-robin"]])
    print(f"identification, K={K}, delta={delta}, {seeds} seeds (budget {budget}):")
    for name, res in results.items():
        med = np.median([c for c, _ in res])
        print(f"  {name:<22} median comparisons {med:>9.0f}  correct {sum(ok for _, ok in res)}/{seeds}"
              f"  round-robin / this = {base / med:5.2f}x", flush=True)


def regret(K: int, seeds: int, budget: int, spacing: float, png: str) -> None:
    makers = {"round-robin": lambda rng: RoundRobin(K, rng), "rucb": lambda rng: RUCB(K, rng),
              "dts": lambda rng: DoubleTS(K, rng)}
    curves = {name: np.zeros(budget) for name in makers}
    for seed in range(seeds):
        u = np.random.default_rng(seed).permutation(np.arange(K) * spacing)
        for name, make in makers.items():
            rng = np.random.default_rng(20_000 + seed)
            curves[name] += np.cumsum(run_duels(make(rng), BTLabeler(u, rng), budget, delta=None).regret) / seeds
    print(f"cumulative regret after {budget} comparisons (mean of {seeds} seeds):")
    for name, c in curves.items():
        print(f"  {name:<12} {c[-1]:9.1f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(np.arange(1, budget + 1), c, label=name)
    ax.set_xlabel("comparisons")
    ax.set_ylabel("cumulative regret")
    ax.set_title(f"dueling bandits, {K} Bradley-Terry items")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--spacing", type=float, default=0.3)
    ap.add_argument("--budget", type=int, default=400_000)
    ap.add_argument("--regret-budget", type=int, default=5000)
    ap.add_argument("--regret-seeds", type=int, default=5)
    ap.add_argument("--png", default="dueling_regret.png")
    ap.add_argument("--with-dts", action="store_true", help="also time Double TS to the certificate (slow)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    identification(args.items, args.seeds, args.delta, args.budget, args.spacing, args.with_dts)
    regret(args.items, args.regret_seeds, args.regret_budget, args.spacing, args.png)
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
