"""Tables for docs/control.md from the stored `rlhfkit control train` summaries and the
side-by-side runs against `imitation` (benchmarks/results/control/*.json).

    python benchmarks/control_tables.py [--dir benchmarks/results/control]

Runs made with `--set baseline=false` carry no true-reward baseline; they borrow it from
the run of the same environment and seed that has one (the random-query run: same agent,
same seed, same env steps), and the table says which file it came from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BARS = {  # the bars: (fraction kind, each-seed minimum, median minimum)
    "CartPole-v1": ("of_baseline", 0.95, 0.95),
    "Pendulum-v1": ("random_to_baseline", 0.70, 0.90),
}


def fmt(values: list[float], digits: int = 1, unit: str = "") -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.{digits}f}{unit} [{v.min():.{digits}f}, {v.max():.{digits}f}]"


def load_runs(root: Path) -> list[dict]:
    runs = []
    for path in sorted(root.glob("*-s[0-9]*.json")):
        d = json.loads(path.read_text())
        if isinstance(d, dict) and "true_return_mean" in d:
            runs.append(dict(d, file=path.name))
    baselines = {(r["env"], r["seed"]): r for r in runs if r.get("baseline_true_return_mean") is not None}
    for r in runs:
        ref = baselines.get((r["env"], r["seed"]))
        if r.get("baseline_true_return_mean") is None and ref is not None and ref["env_steps"] == r["env_steps"]:
            r["baseline_true_return_mean"], r["baseline_from"] = ref["baseline_true_return_mean"], ref["file"]
        b, x, rnd = r.get("baseline_true_return_mean"), r["true_return_mean"], r["random_return_mean"]
        r["of_baseline"] = x / b if b is not None and b > 0 else None  # a ratio only means something for returns > 0
        r["random_to_baseline"] = (x - rnd) / (b - rnd) if b is not None and b != rnd else None
    return runs


def query_table(runs: list[dict]) -> list[str]:
    lines = ["| task | queries | comparisons | seeds | true return, median [min, max] | true-reward RL | "
             "random policy | fraction of true-reward RL | fraction of the way random -> true-reward RL | bar | "
             "comparisons when first at the bar's level, per seed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups = sorted({(r["env"], r["query"], r["comparisons"]) for r in runs}, key=lambda g: (g[0], g[2], g[1]))
    for env, query, n in groups:
        sel = sorted((r for r in runs if (r["env"], r["query"], r["comparisons"]) == (env, query, n)),
                     key=lambda r: r["seed"])
        have_b = all(r["random_to_baseline"] is not None for r in sel)
        base = fmt([r["baseline_true_return_mean"] for r in sel]) if have_b else "-"
        ratio = have_b and all(r["of_baseline"] is not None for r in sel)
        frac = fmt([100 * r["of_baseline"] for r in sel], 1, "%") if ratio else "-"
        way = fmt([100 * r["random_to_baseline"] for r in sel], 1, "%") if have_b else "-"
        lines.append(f"| {env} | {query} | {n} | {','.join(str(r['seed']) for r in sel)} | "
                     f"{fmt([r['true_return_mean'] for r in sel])} | {base} | "
                     f"{fmt([r['random_return_mean'] for r in sel])} | {frac} | {way} | {bar_verdict(env, sel)} | "
                     f"{', '.join(str(first_at_bar(r) or '-') for r in sel)} |")
    return lines


def first_at_bar(r: dict) -> int | None:
    """Comparisons labeled when the per-round evaluation first reached the issue's level
    (95% of true-reward RL on CartPole, 90% of the way from random on Pendulum); None: never."""
    if r["env"] not in BARS or r.get("baseline_true_return_mean") is None:
        return None
    b, rnd = r["baseline_true_return_mean"], r["random_return_mean"]
    for p in r["curve"]:
        x = p["true_return_mean"]
        f = x / b if BARS[r["env"]][0] == "of_baseline" else (x - rnd) / (b - rnd)
        if f >= BARS[r["env"]][2]:
            return int(p["comparisons"])
    return None


def bar_verdict(env: str, sel: list[dict]) -> str:
    if env not in BARS or any(r[BARS[env][0]] is None for r in sel):
        return "-"
    kind, each, median = BARS[env]
    f = np.asarray([r[kind] for r in sel])
    if len(sel) < 3:
        return f"undecided ({len(sel)} of 3 seeds)"
    return "met" if f.min() >= each and np.median(f) >= median else "not met"


def peer_table(root: Path) -> list[str]:
    lines = ["| task | comparisons | side | seeds | true return, median [min, max] | wall time per run, "
             "median [min, max] s | env steps |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(root.glob("vs-imitation-*.json")):
        rows = json.loads(path.read_text())
        for env, n, side in sorted({(r["env"], r["comparisons"], r["side"]) for r in rows}):
            sel = [r for r in rows if (r["env"], r["comparisons"], r["side"]) == (env, n, side)]
            steps = sorted({int(r["env_steps"]) for r in sel})
            how = "read from stored summaries" if all("source" in r for r in sel) else "run by the script"
            lines.append(f"| {env} | {n} | {side} ({how}, {path.name}) | {len(sel)} | {fmt([r['return'] for r in sel])} | "
                         f"{fmt([r['wall_s'] for r in sel], 0)} | {', '.join(map(str, steps))} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="benchmarks/results/control")
    root = Path(ap.parse_args().dir)
    runs = load_runs(root)
    out = query_table(runs) + [""]
    borrowed = sorted({(r["file"], r["baseline_from"]) for r in runs if "baseline_from" in r})
    out += [f"- {f}: true-reward baseline from {src}" for f, src in borrowed] + [""]
    out += peer_table(root)
    print("\n".join(out))


if __name__ == "__main__":
    main()
