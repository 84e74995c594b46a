"""Where a GRPO iteration's time goes, in the setting of `vs_trl.py --tasks grpo` (its assets:
the tiny GPT-2 policy, prompts and shared reward): generation, reward scoring, the update, and
the rest, summed over the timed iterations after warm-up.

    python benchmarks/vs_trl.py --tasks grpo ...   # builds the assets once (default /tmp/rlhfkit-vs-trl)
    python benchmarks/profile_grpo.py --assets /tmp/rlhfkit-vs-trl --engine lean
    RESULT generation_share=... scoring_share=... update_share=... s_per_iter=...
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=Path("/tmp/rlhfkit-vs-trl"))
    ap.add_argument("--engine", choices=["lean", "hf"], default="lean")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))  # the shared reward module, as vs_trl's workers load it
    from _vs_trl_workers import GRPO_G, GRPO_LOSS, GRPO_LR, GRPO_NEW_TOKENS, GRPO_PROMPTS, GRPO_REWARD

    from rlhfkit.algos import grpo
    from rlhfkit.train.online import RolloutConfig

    spent: dict[str, list[float]] = {"generation": [], "scoring": [], "update": [], "iteration": []}

    def timed(name, fn, **extra):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **{**kwargs, **extra})
            spent[name].append(time.perf_counter() - t0)
            return out
        return wrapper

    grpo.generate = timed("generation", grpo.generate, engine=a.engine)
    grpo.score_rollout = timed("scoring", grpo.score_rollout)
    grpo._update = timed("update", grpo._update)
    grpo.grpo_iteration = timed("iteration", grpo.grpo_iteration)
    prompts = str(a.assets / "prompts.txt")
    with tempfile.TemporaryDirectory() as d:
        rc = RolloutConfig(task=prompts, prompts=prompts, batch_prompts=GRPO_PROMPTS, max_new_tokens=GRPO_NEW_TOKENS)
        grpo.run(grpo.GRPOConfig(policy=str(a.assets / "policy"), rewards=[f"fn:{GRPO_REWARD}"], rollout=rc,
                                 group_size=GRPO_G, loss_type=GRPO_LOSS, epochs=1, minibatch=0, beta=0.0,
                                 iterations=a.warmup + a.steps, lr=GRPO_LR, checkpoint_every=0, out=d, device="cpu",
                                 mixed_precision="bf16" if a.precision == "bf16" else "fp32"))
    total = sum(spent["iteration"][a.warmup:])
    shares = {k: sum(v[a.warmup:]) / total for k, v in spent.items() if k != "iteration"}
    for k, v in shares.items():
        print(f"{k:10s} {100 * v:5.1f}% of {a.steps} iterations ({total:.2f} s, {a.engine}, {a.precision})")
    print(f"other      {100 * (1 - sum(shares.values())):5.1f}%")
    print("RESULT " + " ".join(f"{k}_share={v:.3f}" for k, v in shares.items())
          + f" s_per_iter={total / a.steps:.4f}")


if __name__ == "__main__":
    main()
