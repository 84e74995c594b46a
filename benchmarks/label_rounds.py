"""The model in the loop: rounds of refresh -> label -> export -> rm -> ppo on the embedded task,
with simulated labelers answering through the labeling app's HTTP API (`rlhfkit label rounds`).

    python benchmarks/label_rounds.py                       # 3 rounds; pretrains and SFTs a tiny GPT first
    python benchmarks/label_rounds.py --policy runs/quickstart/sft/final   # start from a quickstart's SFT
    python benchmarks/label_rounds.py --method dpo --kind pairwise

Each round samples K = 4 fresh responses per new prompt from the current policy and writes
them as items through the store (no server running), starts `rlhfkit label serve` in a child
process, lets four simulated labelers (feedback/labelers.py, handed the task's gold scorer)
lease and answer every item over HTTP, stops the server, exports every label so far, trains a
reward model on them from the SFT backbone and runs PPO from the current policy. The gold score
of each round's policy is measured on 200 held-out prompts. The server is a new process every
round, so the answers of round r were acknowledged by a server that is gone when they are counted.

The last line is `RESULT gold_0=... gold_1=... gold_2=... gold_3=... acknowledged=... stored=...
lost=...`: gold_r the gold score after round r (gold_0: the SFT policy), acknowledged the
answers the server acknowledged, stored the answers in the database, lost the acknowledged
ones missing from it. The exit status is 0 when the gold score rises in every round and no
acknowledged answer is lost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RLHFKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    from rlhfkit.rounds import RoundsConfig, run_rounds

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--policy", default=None, help="round-0 SFT policy (default: pretrain and SFT one first)")
    ap.add_argument("--method", choices=("ppo", "dpo"), default="ppo")
    ap.add_argument("--kind", choices=("ranking", "pairwise"), default="ranking")
    ap.add_argument("--prompts-per-round", type=int, default=None)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="label_rounds_")
    cfg = RoundsConfig(out=out, seed=a.seed, rounds=a.rounds, policy=a.policy, method=a.method, kind=a.kind)
    if a.prompts_per_round:
        cfg.prompts_per_round = a.prompts_per_round
    s = run_rounds(cfg)
    from rlhfkit.report import rounds_table

    print(rounds_table(s["rounds"]))
    print(f"# {a.method}, {a.kind} items, {cfg.prompts_per_round} prompts x K={cfg.k} per round, "
          f"{cfg.labelers} labelers over HTTP; {s['wall_s']:.0f} s; report in {Path(out) / 'report.md'}")
    golds = " ".join(f"gold_{i}={g:.3f}" for i, g in enumerate(s["gold"]))
    print(f"RESULT {golds} acknowledged={s['acknowledged']} stored={s['stored']} lost={s['lost']}")
    ok = s["rises_every_round"] and s["lost"] == 0 and s["stored"] == s["acknowledged"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
