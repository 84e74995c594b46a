"""MaxEnt IRL (rlhfkit) vs `imitation`'s MCE IRL on the same gridworlds and demonstrations.

For each N x N gridworld (one-hot colour features, true reward w ~ N(0, 1), horizon 4N, gamma 0.99,
slip 0.1), seed and demonstration count, both learners get the same expert trajectories; each
learned reward is scored the same way: plan optimally for it, evaluate exactly on the true reward,
normalize so that the uniform random policy is 0 and the optimal policy 1. Printed: median score
[min, max] over seeds, median iterations and seconds per run.

    python benchmarks/irl_vs_imitation.py                      # rlhfkit only
    python benchmarks/irl_vs_imitation.py --peer /tmp/imitation-venv/bin/python

The peer runs in its own virtual environment (`python -m venv /tmp/imitation-venv &&
/tmp/imitation-venv/bin/pip install imitation`) through benchmarks/_imitation_mce_worker.py,
with the library's defaults (Adam lr 1e-2, linear reward net with bias, at most 1,000 iterations).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from rlhfkit.imitation.maxent_irl import maxent_irl
from rlhfkit.tabular.demos import sample_demos, score_reward
from rlhfkit.tabular.gridworld import random_feature_gridworld

WORKER = Path(__file__).with_name("_imitation_mce_worker.py")


def run_peer(python: str, task, demos, seed: int, tmp: Path) -> dict:
    src, dst = tmp / "task.npz", tmp / "out.json"
    np.savez(src, P=task.mdp.P, features=task.mdp.features, start=task.mdp.start, horizon=task.horizon,
             gamma=task.mdp.gamma, seed=seed, states=np.stack([d.states for d in demos]),
             actions=np.stack([d.actions for d in demos]))
    subprocess.run([python, str(WORKER), str(src), str(dst)], check=True, capture_output=True)
    return json.loads(dst.read_text())


def fmt(rows: list[dict]) -> str:
    s = np.array([r["score"] for r in rows])
    return (f"{np.median(s):.3f} [{s.min():.3f}, {s.max():.3f}]  iters {np.median([r['iterations'] for r in rows]):>5.0f}"
            f"  {np.median([r['seconds'] for r in rows]):6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--features", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--demos", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--peer", default=None, help="python of a venv with `imitation` installed")
    ap.add_argument("--json", default=None, help="also write all rows here")
    args = ap.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for n in args.sizes:
            for F in args.features:
                for n_demos in args.demos:
                    ours, peer = [], []
                    for seed in range(args.seeds):
                        task = random_feature_gridworld(n, F, seed=seed)
                        demos = sample_demos(task, n_demos, seed=seed + 100)
                        t0 = time.perf_counter()
                        res = maxent_irl(task.mdp, demos, task.horizon)
                        ours.append({"learner": "rlhfkit", "n": n, "F": F, "demos": n_demos, "seed": seed,
                                     "score": score_reward(task, res.reward).normalized,
                                     "iterations": res.iterations, "seconds": time.perf_counter() - t0})
                        if args.peer:
                            out = run_peer(args.peer, task, demos, seed, Path(tmpdir))
                            peer.append({"learner": "imitation", "n": n, "F": F, "demos": n_demos, "seed": seed,
                                         "score": score_reward(task, np.array(out["reward"])).normalized,
                                         "iterations": out["iterations"], "seconds": out["seconds"]})
                    line = f"{n:>2}x{n:<2} F={F} demos={n_demos:>3} | rlhfkit {fmt(ours)}"
                    if peer:
                        line += f" | imitation MCE {fmt(peer)}"
                    print(line, flush=True)
                    rows += ours + peer
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
