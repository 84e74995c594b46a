"""pretrain -> sft -> sample -> label-sim -> rm on the embedded task, through the CLI, timed.

    python benchmarks/rm_chain.py [--out DIR] [--seed N]

Each stage runs as `rlhfkit <stage>` with its default settings; the last line is
RESULT heldout_accuracy=... gold_accuracy=... ece=... n_heldout=... wall_s=...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stage(args: list[str]) -> float:
    t = time.time()
    subprocess.run([sys.executable, "-m", "rlhfkit.cli", *args], check=True,
                   env=dict(os.environ, RLHFKIT_PROGRESS=os.environ.get("RLHFKIT_PROGRESS", "0")))
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="rm_chain_"))
    seed = ["--seed", str(a.seed)]
    t0 = time.time()
    times = {
        "pretrain": stage(["pretrain", "--out", str(out / "pretrain"), "--set", f"task_seed={a.seed}", *seed]),
        "sft": stage(["sft", "--model", str(out / "pretrain" / "final"), "--out", str(out / "sft"), *seed]),
        "sample": stage(["sample", "--policy", str(out / "sft" / "final"), "--out", str(out / "sample"), *seed]),
        "label-sim": stage(["label-sim", "--samples", str(out / "sample" / "samples.jsonl"),
                            "--out", str(out / "label-sim"), *seed]),
        "rm": stage(["rm", "--model", str(out / "sft" / "final"), "--data", str(out / "label-sim" / "labels.jsonl"),
                     "--out", str(out / "rm"), *seed]),
    }
    wall = time.time() - t0
    s = json.loads((out / "rm" / "summary.json").read_text())
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"run folder: {out}")
    print(f"RESULT heldout_accuracy={s['heldout_accuracy']:.4f} gold_accuracy={s['gold_accuracy']:.4f} "
          f"ece={s['ece']:.4f} n_heldout={s['n_heldout']} wall_s={wall:.1f}")


if __name__ == "__main__":
    main()
