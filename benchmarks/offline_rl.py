"""Offline RL as sequence modelling, measured (issue 15).

For each environment: build (or reuse) the dataset with `rlhfkit offline collect`, then on
each of its medium-replay and medium-expert mixtures train, for every seed, our Decision
Transformer, behaviour cloning, %BC and transformers' DecisionTransformerModel (the peer,
trained with the Hugging Face blog's collator under the same optimizer settings and step
budget), and on medium-replay the Constrained DT and BC-Safe at each cost threshold.
Everything is scored with the D4RL formula against the dataset's own reference returns.

    python benchmarks/offline_rl.py                       # the full table
    python benchmarks/offline_rl.py --envs CartPole-v1 --seeds 0 --steps 300   # a quick look

Prints one table per environment and ends with
    RESULT dt_minus_bc=... dt_minus_hf=... spearman=... cdt_cost=... cdt_minus_bcsafe=... collect_s=...
dt_minus_bc / dt_minus_hf: the smallest (over environments and mixtures) margin of DT's mean
normalized score (over seeds) over BC's / the peer's; spearman: the rank correlation between
target and achieved return (seed-mean, five targets across the mixture's returns) on the MuJoCo
task, the smaller over its two mixtures; cdt_cost: the CDT's largest mean normalized cost over
thresholds and environments; cdt_minus_bcsafe: its smallest reward margin over BC-Safe at the
same threshold; collect_s: the MuJoCo dataset's build time (from its dataset.json; the time
the build took when it ran, possibly in an earlier invocation: the dataset is cached).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rlhfkit import config as config_lib
from rlhfkit.offline.dataset import load_mixture, read_info
from rlhfkit.offline.method import OfflineConfig
from rlhfkit.offline.train import default_thresholds, run_train, spearman

MUJOCO = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
PUBLISHED = {"hopper-medium": 67.6, "halfcheetah-medium": 42.6, "walker2d-medium": 74.0,
             "hopper-medium-replay": 82.7}  # Chen et al. 2021, table 2 (D4RL data; not comparable)


def collect(env: str, root: Path, args) -> dict:
    """The environment's dataset: an existing folder is used as it is (its build time is read
    from its dataset.json), unless --recollect; otherwise `rlhfkit offline collect` builds it."""
    folder = root / env
    t0 = time.perf_counter()
    if args.recollect or not (folder / "dataset.json").exists():
        cmd = [sys.executable, "-m", "rlhfkit.cli", "offline", "collect", "--env", env, "--out", str(folder),
               *args.collect_args]
        subprocess.run(cmd, check=True)
    info = read_info(folder)
    return {"folder": folder, "wall_s": time.perf_counter() - t0, "collect_s": info.meta.get("collect_s")}


def train(folder: Path, mixture: str, method: str, seed: int, out: Path, args, **kw) -> dict:
    """One run; a run directory already holding a summary for the same config is reused, so an
    interrupted benchmark picks up where it stopped."""
    cfg = OfflineConfig(data=str(folder), mixture=mixture, method=method, seed=seed, steps=args.steps,
                        batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, hidden=args.hidden,
                        layers=args.layers, context=args.context, eval_episodes=args.eval_episodes,
                        checkpoint_every=args.steps, out=str(out), **kw)
    done = out / "summary.json"
    if done.exists() and (out / "config.yaml").exists():
        if config_lib.to_dict(config_lib.resolve(OfflineConfig, out / "config.yaml")) == config_lib.to_dict(cfg):
            return json.loads(done.read_text())
    return run_train(cfg)


def ms(xs: list[float]) -> str:
    return f"{np.mean(xs):6.1f} +- {np.std(xs):4.1f}"


def run_env(env: str, args, out: Path) -> dict:
    """One environment's whole table; cached in OUT/ENV/results.json for the same settings (so
    the environments can be measured in separate invocations and summarized together)."""
    cache = out / env / "results.json"
    keys = ("mixtures", "seeds", "steps", "batch_size", "lr", "warmup", "hidden", "layers", "context",
            "eval_episodes")
    settings = {k: getattr(args, k) for k in keys}
    if cache.exists() and not args.rerun:
        old = json.loads(cache.read_text())
        if old.get("settings") == settings:
            print(f"\n{env}: reusing {cache} (same settings; --rerun to measure again)")
            if args.redo_cdt:
                old["cdt"] = cdt_block(env, Path(old["collect"]["folder"]), args, out)
                cache.write_text(json.dumps(old, indent=1, default=float))
            else:
                print_cached(env, old)
            return old
    col = collect(env, Path(args.data_root), args)
    folder = col["folder"]
    res: dict = {"settings": settings, "collect": {k: (str(v) if isinstance(v, Path) else v) for k, v in col.items()},
                 "mixtures": {}}
    for mixture in args.mixtures:
        rows: dict[str, list[float]] = {m: [] for m in ("dt", "bc", "pct-bc", "hf-dt")}
        achieved, hf_achieved = [], []
        for seed in args.seeds:
            for m in rows:
                s = train(folder, mixture, m, seed, out / env / mixture / f"{m}-s{seed}", args)
                rows[m].append(s["score"])
                if m in ("dt", "hf-dt"):
                    (achieved if m == "dt" else hf_achieved).append([pt["return_mean"] for pt in s["targets"]])
                    targets = [pt["target_return"] for pt in s["targets"]]
                    main = s["main_target"]
        mean_achieved = np.mean(achieved, 0).tolist()
        rho = spearman(targets, mean_achieved)
        res["mixtures"][mixture] = {"scores": rows, "targets": targets, "achieved": mean_achieved,
                                    "hf_achieved": np.mean(hf_achieved, 0).tolist(), "spearman": rho,
                                    "main_target": main}
        print(f"\n{env} / {mixture} (normalized score at target {main:.0f}, mean +- sd over seeds {args.seeds})")
        for m, xs in rows.items():
            print(f"  {m:8s} {ms(xs)}")
        print(f"  DT return conditioning: targets {np.round(targets, 1).tolist()} -> achieved "
              f"{np.round(mean_achieved, 1).tolist()} (Spearman {rho:.2f})")
    res["cdt"] = cdt_block(env, folder, args, out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res, indent=1, default=float))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1", "Hopper-v5"])
    p.add_argument("--mixtures", nargs="+", default=["medium-replay", "medium-expert"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--context", type=int, default=20)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads (small models: 1 is as fast)")
    p.add_argument("--rerun", action="store_true", help="measure again even where results are cached")
    p.add_argument("--recollect", action="store_true", help="build the datasets even where they exist")
    p.add_argument("--redo-cdt", action="store_true", help="where results are cached, measure the CDT block again")
    p.add_argument("--data-root", default="runs/offline-data")
    p.add_argument("--out", default="runs/offline-bench")
    p.add_argument("--collect-args", nargs=argparse.REMAINDER, default=[], help="passed to offline collect")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    margins_bc, margins_hf, spearmans, cdt_costs, cdt_margins = [], [], [], [], []
    collect_s = None
    all_res = {}
    for env in args.envs:
        res = all_res[env] = run_env(env, args, out)
        if env in MUJOCO:
            collect_s = res["collect"]["collect_s"]
        for mixture, m in res["mixtures"].items():
            sc = m["scores"]
            margins_bc.append(float(np.mean(sc["dt"]) - np.mean(sc["bc"])))
            margins_hf.append(float(np.mean(sc["dt"]) - np.mean(sc["hf-dt"])))
            if env in MUJOCO:
                spearmans.append(m["spearman"])
        for v in res["cdt"]["per_threshold"].values():
            cdt_costs.append(float(np.mean(v["cdt_norm_cost"])))
            cdt_margins.append(float(np.mean(v["cdt_score"]) - np.mean(v["bcsafe_score"])))
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(all_res))
    print(f"\nmarkdown tables in {out / 'table.md'}")
    fmt = lambda xs: f"{min(xs):.2f}" if xs else "nan"  # noqa: E731
    print(f"\nRESULT dt_minus_bc={fmt(margins_bc)} dt_minus_hf={fmt(margins_hf)} spearman={fmt(spearmans)} "
          f"cdt_cost={max(cdt_costs) if cdt_costs else float('nan'):.3f} cdt_minus_bcsafe={fmt(cdt_margins)} "
          f"collect_s={collect_s if collect_s is not None else float('nan'):.0f}")


def markdown(all_res: dict) -> str:
    """The measured tables as Markdown (docs/offline.md): mean +- sd over seeds."""
    cell = lambda xs: f"{np.mean(xs):.1f} ± {np.std(xs):.1f}"  # noqa: E731
    lines = ["| environment | mixture | target | DT | BC | %BC (10%) | transformers DT | DT Spearman |",
             "|---|---|---|---|---|---|---|---|"]
    for env, res in all_res.items():
        for mixture, m in res["mixtures"].items():
            sc = m["scores"]
            lines.append(f"| {env} | {mixture} | {m['main_target']:.0f} | {cell(sc['dt'])} | {cell(sc['bc'])} | "
                         f"{cell(sc['pct-bc'])} | {cell(sc['hf-dt'])} | {m['spearman']:.2f} |")
    lines += ["", "| environment | threshold | CDT reward | CDT cost / threshold | BC-Safe reward | BC-Safe cost / threshold |",
              "|---|---|---|---|---|---|"]
    for env, res in all_res.items():
        for k, v in res["cdt"]["per_threshold"].items():
            lines.append(f"| {env} | {float(k):g} | {cell(v['cdt_score'])} | {np.mean(v['cdt_norm_cost']):.2f} | "
                         f"{cell(v['bcsafe_score'])} | {np.mean(v['bcsafe_norm_cost']):.2f} |")
    return "\n".join(lines) + "\n"


def print_cached(env: str, res: dict) -> None:
    for mixture, m in res["mixtures"].items():
        print(f"{env} / {mixture} at target {m['main_target']:.0f}: " + ", ".join(
            f"{k} {ms(v)}" for k, v in m["scores"].items()) + f"; Spearman {m['spearman']:.2f}")
    for k, v in res["cdt"]["per_threshold"].items():
        print(f"{env} CDT threshold {float(k):.1f}: CDT {ms(v['cdt_score'])} cost {np.mean(v['cdt_norm_cost']):.2f} | "
              f"BC-Safe {ms(v['bcsafe_score'])} cost {np.mean(v['bcsafe_norm_cost']):.2f}")


def cdt_block(env: str, folder: Path, args, out: Path) -> dict:
    """CDT at the thresholds vs BC-Safe trained for each threshold, on medium-replay."""
    mixture = "medium-replay"
    data = load_mixture(folder, mixture)
    thresholds = default_thresholds(data, OfflineConfig())
    per = {k: {"cdt_score": [], "cdt_norm_cost": [], "bcsafe_score": [], "bcsafe_norm_cost": []} for k in thresholds}
    for seed in args.seeds:
        s = train(folder, mixture, "cdt", seed, out / env / "cdt" / f"s{seed}", args, thresholds=thresholds)
        for pt in s["thresholds"]:
            per[pt["threshold"]]["cdt_score"].append(pt["score_mean"])
            per[pt["threshold"]]["cdt_norm_cost"].append(pt["norm_cost_mean"])
        for k in thresholds:
            b = train(folder, mixture, "bc-safe", seed, out / env / "bc-safe" / f"k{k:g}-s{seed}", args,
                      cost_threshold=k)
            per[k]["bcsafe_score"].append(b["point"]["score_mean"])
            per[k]["bcsafe_norm_cost"].append(b["point"]["norm_cost_mean"])
    print(f"\n{env} / {mixture}: CDT vs BC-Safe by cost threshold (normalized reward; normalized cost, safe <= 1)")
    for k, v in per.items():
        print(f"  threshold {k:6.1f}: CDT {ms(v['cdt_score'])}; cost {np.mean(v['cdt_norm_cost']):.2f} | "
              f"BC-Safe {ms(v['bcsafe_score'])}; cost {np.mean(v['bcsafe_norm_cost']):.2f}")
    return {"mixture": mixture, "per_threshold": {str(k): v for k, v in per.items()}}


if __name__ == "__main__":
    main()
