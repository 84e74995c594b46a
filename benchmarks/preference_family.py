"""Learning from preferences without a reward model, the whole family on one table.

    python benchmarks/preference_family.py                   # seeds 0-2, clean and noisy labels
    python benchmarks/preference_family.py --seeds 0 --methods dpo ipo kto   # a part of it

For each seed, the quickstart's first stages are run (or reused, if `<out>/seed<s>` holds them):
pretrain a tiny GPT, SFT it, sample K = 4 responses for 1,600 prompts, have the simulated
labelers rank them, and train the quickstart's reward model (used only as the eval's proxy and
as nobody's judge here). The rankings become the training labels of every method:
- the pairwise methods (DPO sigmoid, IPO, cDPO, robust DPO, hinge, RPO, SimPO, ORPO) read the
  rankings' strict pairs (ties left out), each pair weighted 1/C(K, 2) as the quickstart's DPO;
- KTO reads the same pairs as binary feedback (`feedback.records.to_feedback`: the chosen
  response desirable, the rejected undesirable);
- online DPO reads no labels: each batch it samples two responses per prompt and the same
  simulated labeler pool judges them (flipping answers at the noisy rate in the noisy run).
The noisy run flips 20% of the training pairs (a seeded draw; KTO's records come from the flipped
pairs), as a careless labeler would.

Every method starts from the same SFT policy and trains with the quickstart DPO's optimizer
(lr 1e-4, batch 32) for half a pass over its labels (`--epochs`; a pass over 1,600 ranked
prompts is 9,500 pairs), and online DPO for 40 batches of 32 prompts (1,280 judged pairs). Each
policy is evaluated by `rlhfkit eval` on 200 held-out prompts: win-rate of its sampled answers
against the SFT policy's, judged by the task's gold scorer, with 95% CIs, gold score and KL to
SFT. Each training runs in its own process, `--jobs` of them at once (default 2, one thread
each): wall time and peak resident memory (ru_maxrss) are that process's, under that load.

The last line: `RESULT <name>_winrate=... <name>_noisy_winrate=... ...` (seed 0, vs SFT).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

os.environ.setdefault("RLHFKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# name -> (command, extra --set options); every pairwise loss is `rlhfkit dpo --set loss=...`
PAIRWISE = {"dpo": "sigmoid", "ipo": "ipo", "cdpo": "cdpo", "robust": "robust", "hinge": "hinge", "rpo": "rpo",
            "simpo": "simpo", "orpo": "orpo"}
METHODS = (*PAIRWISE, "kto", "online_dpo")
NOISE = 0.2


def build_base(out: Path, seed: int) -> dict[str, str]:
    """The quickstart's pretrain -> sft -> sample -> label-sim -> rm, reused where finished."""
    from rlhfkit.config import ModelConfig
    from rlhfkit.pipeline import QuickstartConfig, ranked_labels_and_rm, sft_policy

    q = QuickstartConfig()
    common = {"seed": seed, "log": [], "device": "cpu"}
    sft = sft_policy(out, ModelConfig(n_positions=64), q.pretrain_docs, q.pretrain_epochs, q.sft_demos, True, common)
    lab, rm = ranked_labels_and_rm(out, sft, q.rm_prompts, q.k, q.max_new_tokens, True, common)
    return {"sft": sft, "labels": lab["labels"], "rm": rm["final"]}


def write_labels(base: dict[str, str], data: Path, seed: int) -> dict[str, Path]:
    """clean/noisy comparisons (strict pairs of the rankings) and the binary feedback made of them."""
    from rlhfkit.feedback.formats import read_records, write_records
    from rlhfkit.feedback.records import Comparison, expand_to_comparisons, to_feedback

    data.mkdir(parents=True, exist_ok=True)
    pairs = [c for c in expand_to_comparisons(read_records(base["labels"])) if not c.tie]
    rng = random.Random(1000 + seed)
    flipped = [Comparison(c.prompt, c.rejected, c.chosen, weight=c.weight, labeler=c.labeler)
               if rng.random() < NOISE else c for c in pairs]
    paths = {}
    for cond, cs in (("clean", pairs), ("noisy", flipped)):
        paths[f"{cond}_pairs"] = data / f"{cond}_pairs.jsonl"
        paths[f"{cond}_feedback"] = data / f"{cond}_feedback.jsonl"
        if not paths[f"{cond}_pairs"].exists():
            write_records(paths[f"{cond}_pairs"], cs)
            write_records(paths[f"{cond}_feedback"], to_feedback(cs))
    return paths


def command(method: str, policy: str, labels: dict[str, Path], cond: str, out: Path, seed: int,
            epochs: float) -> list[str]:
    """The CLI line training `method` on condition `cond`'s labels."""
    base = ["--policy", policy, "--out", str(out), "--seed", str(seed)]
    optim = ["--set", "optim.lr=1e-4", "--set", f"optim.epochs={epochs}", "--set", "optim.checkpoint_every=0"]
    if method in PAIRWISE:
        return ["dpo", "--data", str(labels[f"{cond}_pairs"]), *base, "--set", f"loss={PAIRWISE[method]}", *optim]
    if method == "kto":
        return ["kto", "--data", str(labels[f"{cond}_feedback"]), *base, *optim]
    if method == "online_dpo":
        # 40 batches of 32 prompts x 2 responses: 1,280 prompts judged, a pair each, against the offline
        # methods' half pass over 1,600 prompts ranked 4 ways (6 pairs each)
        return ["online-dpo", *base, "--set", "judge=labelers", "--set", "lr=1e-4", "--set", "iterations=40",
                "--set", "rollout.batch_prompts=32", "--set", "rollout.max_new_tokens=40",
                "--set", f"rollout.task_seed={seed}", "--set", "checkpoint_every=0",
                "--set", f"judge_flip={NOISE if cond == 'noisy' else 0.0}"]
    raise ValueError(method)


def train(argv: list[str], out: Path, threads: int) -> dict:
    """Run one training in its own process; wall time and the process's peak RSS (os.wait4)."""
    done = out / "summary.json"
    stats = out.parent / f"{out.name}.cost.json"
    if done.exists() and stats.exists():
        return json.loads(stats.read_text())
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rlhfkit.cli", *argv], stdout=log, stderr=log, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed: rlhfkit {' '.join(argv)}")
    cost = {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "threads": threads}  # Linux: kilobytes
    stats.write_text(json.dumps(cost))
    return cost


def evaluate(base: dict[str, str], finals: dict[str, str], out: Path, seed: int, n_prompts: int) -> dict:
    from rlhfkit.evaluate import EvalConfig, evaluate_all

    path = out / "eval.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if set(finals) <= set(cached):
            return cached
    res = evaluate_all(EvalConfig(reference=base["sft"], reward_model=base["rm"],
                                  policies=[f"{k}={v}" for k, v in finals.items()], n_prompts=n_prompts,
                                  task_seed=seed, max_new_tokens=40, seed=seed))
    path.write_text(json.dumps(res, indent=1))
    return res


def table(rows: dict[str, dict[str, list]], cond: str) -> str:
    head = ("| method | win-rate vs SFT (seed 0) [95% CI] | win-rate, mean of seeds | gold | KL to SFT "
            "| wall s | peak RSS MB |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for m, r in rows.items():
        if not r["win"]:
            continue
        w0, ci = r["win"][0], r["ci"][0]
        lines.append(f"| {m} | {w0:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {mean(r['win']):.3f} (n={len(r['win'])}) "
                     f"| {mean(r['gold']):.3f} | {mean(r['kl']):.2f} | {mean(r['wall']):.0f} "
                     f"| {max(r['rss']):.0f} |")
    return f"### {cond} labels\n\n" + "\n".join(lines)


def plot(rows: dict[str, dict[str, dict[str, list]]], root: Path, path: Path) -> None:
    """Left: seed 0's training curves on the clean labels (the batch's implicit-reward accuracy);
    right: win-rate vs KL to SFT of every method, seed and condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.logging import read_metrics

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}
    for m in rows.get("clean", {}):
        log = root / "seed0" / "clean" / m / "metrics.jsonl"
        key = "online_dpo/accuracy" if m == "online_dpo" else "train/accuracy"
        pts = [(r["step"], r[key]) for r in read_metrics(log) if key in r] if log.exists() else []
        if pts:
            last = pts[-1][0]
            xs = [x / last for x, _ in pts]
            ys = [sum(y for _, y in pts[max(0, i - 4): i + 1]) / len(pts[max(0, i - 4): i + 1]) for i in range(len(pts))]
            ax1.plot(xs, ys, label=m, color=colors[m])
    ax1.set(xlabel="fraction of the run", ylabel="implicit-reward accuracy on the batch (mean of 5 logs)",
            title="seed 0, clean labels: training curves")
    ax1.legend(fontsize=8)
    for cond, marker in (("clean", "o"), ("noisy", "x")):
        for m, r in rows.get(cond, {}).items():
            ax2.scatter(r["kl"], r["win"], marker=marker, color=colors[m], label=f"{m}" if cond == "clean" else None)
    ax2.axhline(0.6, color="grey", lw=0.8, ls="--")
    ax2.axhline(0.5, color="grey", lw=0.8)
    ax2.set(xscale="symlog", xlabel="KL to SFT (nats per response)", ylabel="win-rate vs SFT (gold judge)",
            title="every seed: o clean labels, x 20% flipped")
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--conditions", nargs="+", default=["clean", "noisy"], choices=["clean", "noisy"])
    ap.add_argument("--out", type=Path, default=Path("runs/preference_family"))
    ap.add_argument("--eval-prompts", type=int, default=200)
    ap.add_argument("--epochs", type=float, default=0.5, help="passes over the labels of the offline methods")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once, each on 2 / jobs threads")
    ap.add_argument("--base-only", action="store_true", help="build the seeds' SFT policies and labels, then stop")
    a = ap.parse_args()
    rows = {c: {m: {"win": [], "ci": [], "gold": [], "kl": [], "wall": [], "rss": []} for m in a.methods}
            for c in a.conditions}
    for seed in a.seeds:
        root = a.out / f"seed{seed}"
        base = build_base(root, seed)
        labels = write_labels(base, root / "data", seed)
        if a.base_only:
            continue
        for cond in a.conditions:
            finals = {m: str(root / cond / m / "final") for m in a.methods}
            threads = max(1, 2 // a.jobs)
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
                futures = {m: pool.submit(train, command(m, base["sft"], labels, cond, root / cond / m, seed, a.epochs),
                                          root / cond / m, threads) for m in a.methods}
                costs = {m: f.result() for m, f in futures.items()}
            res = evaluate(base, finals, root / cond, seed, a.eval_prompts)
            for m in a.methods:
                r = rows[cond][m]
                r["win"].append(res[m]["winrate_vs_sft"])
                r["ci"].append(res[m]["winrate_ci"])
                r["gold"].append(res[m]["gold"])
                r["kl"].append(res[m]["kl"])
                r["wall"].append(costs[m]["wall_s"])
                r["rss"].append(costs[m]["peak_rss_mb"])
    if a.base_only:
        return 0
    report = [table(rows[c], c) for c in a.conditions]
    print("\n\n".join(report))
    print(f"# seeds {a.seeds}; {a.eval_prompts} eval prompts; noisy = {NOISE:.0%} of training pairs flipped")
    (a.out / "table.md").write_text("\n\n".join(report) + "\n")
    plot(rows, a.out, a.out / "family.png")
    parts = []
    for m in a.methods:
        for c, key in (("clean", f"{m}_winrate"), ("noisy", f"{m}_noisy_winrate")):
            if c in rows and rows[c][m]["win"]:
                parts.append(f"{key}={rows[c][m]['win'][0]:.3f}")
    print("RESULT " + " ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
