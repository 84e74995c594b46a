"""Rollout generation: rlhfkit's lean decoding loop (`lm/decode.py`) against Hugging Face
`generate`, on the same policy, prompts and seed (both draw the same tokens), alternating the
two sides in one process; and the share of a PPO iteration that generation takes.

    python benchmarks/generation.py --policy runs/quickstart/sft/final
    RESULT lean_vs_hf=... gen_share_lean=... gen_share_hf=...

`lean_vs_hf`: median HF time / median lean time for one rollout batch (higher: lean faster).
`gen_share_*`: generation's share of one PPO iteration (sampling + scoring + update), measured
with each engine. Run it alone on the machine: a second process on the same cores distorts both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlhfkit.algos import ppo
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.sampling import generate
from rlhfkit.tasks.base import load_task
from rlhfkit.train.online import RolloutConfig


def time_generation(model, tok, prompts, engine: str, max_new_tokens: int, seed: int) -> float:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    generate(model, tok, prompts, max_new_tokens=max_new_tokens, engine=engine)
    return time.perf_counter() - t0


def ppo_iteration_times(policy: str, reward_model: str, engine: str, iterations: int, batch: int,
                        max_new_tokens: int, out: str) -> tuple[float, float]:
    """(median seconds in generation, median seconds per PPO iteration) over `iterations`."""
    from rlhfkit.lm import sampling

    gen_times: list[float] = []
    real = sampling.generate

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        r = real(*args, **dict(kwargs, engine=engine))
        gen_times.append(time.perf_counter() - t0)
        return r

    ppo.generate = timed  # what ppo_iteration calls for its rollouts
    try:
        cfg = ppo.PPOConfig(out=out, policy=policy, reward_model=reward_model, iterations=iterations,
                            checkpoint_every=0, device="cpu",
                            rollout=RolloutConfig(batch_prompts=batch, max_new_tokens=max_new_tokens))
        t0 = time.perf_counter()
        ppo.run(cfg)
        total = time.perf_counter() - t0
    finally:
        ppo.generate = real
    return sum(gen_times), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True, help="policy folder (e.g. the quickstart's sft/final)")
    ap.add_argument("--reward-model", default=None, help="reward model folder, for the PPO share (optional)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--ppo-iterations", type=int, default=6)
    ap.add_argument("--out", default="/tmp/rlhfkit-generation-bench")
    a = ap.parse_args()

    model, tok = load_policy(a.policy)
    prompts = load_task("reviews").prompts(a.batch, "rl")
    for engine in ("lean", "hf"):  # warm-up
        time_generation(model, tok, prompts, engine, a.max_new_tokens, 0)
    times: dict[str, list[float]] = {"lean": [], "hf": []}
    for r in range(a.repeats):
        for engine in (("lean", "hf") if r % 2 == 0 else ("hf", "lean")):
            times[engine].append(time_generation(model, tok, prompts, engine, a.max_new_tokens, r))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:5s} one batch of {a.batch} x {a.max_new_tokens} tokens: median {med[k] * 1e3:.0f} ms "
              f"(min {min(v) * 1e3:.0f}, max {max(v) * 1e3:.0f}) over {len(v)}")
    line = {"lean_vs_hf": med["hf"] / med["lean"]}
    if a.reward_model:
        for engine in ("hf", "lean"):
            gen, total = ppo_iteration_times(a.policy, a.reward_model, engine, a.ppo_iterations, a.batch,
                                             a.max_new_tokens, f"{a.out}/{engine}")
            print(f"PPO with {engine}: {a.ppo_iterations} iterations in {total:.1f} s, generation {gen:.1f} s "
                  f"({100 * gen / total:.0f}%)")
            line[f"gen_share_{engine}"] = gen / total
            line[f"ppo_s_{engine}"] = total
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in line.items()))


if __name__ == "__main__":
    main()
