"""Where our time goes at `benchmarks/vs_trl.py`'s settings: a phase breakdown of one PPO
iteration (16 prompts x 1 completion of 32 tokens, one epoch) and the top operators of a
reward-model step (8 pairs), on the assets vs_trl.py built.

    python benchmarks/profile_vs_trl.py [--assets /tmp/rlhfkit-vs-trl] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def ppo_phases(assets: Path, iters: int) -> dict[str, float]:
    from rlhfkit.lm.forward import ActorCritic, ValueHead, actor_critic_forward, frozen_copy, response_forward
    from rlhfkit.lm.scoring import RewardModel
    from rlhfkit.lm.models import load_policy
    from rlhfkit.lm.sampling import generate
    from rlhfkit.ops.losses import ppo_clip, value_loss

    policy, tok = load_policy(assets / "policy")
    policy.eval()
    ref, rm = frozen_copy(policy), RewardModel(assets / "rm", 128)
    ac = ActorCritic(policy, ValueHead(policy.config.hidden_size))
    opt = torch.optim.Adam(ac.parameters(), lr=1e-6, eps=1e-5)
    prompts = (assets / "prompts.txt").read_text().splitlines()
    times: dict[str, list[float]] = {}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(time.perf_counter() - t)
        return out

    for it in range(iters + 1):
        batch = prompts[16 * it: 16 * (it + 1)]
        with torch.no_grad():
            ro = timed("generate (HF generate, KV cache)", lambda: generate(policy, tok, batch, max_new_tokens=32))
        new = timed("policy + value forward (with grad)", lambda: actor_critic_forward(ac, ro, with_entropy=True))
        with torch.no_grad():
            timed("reference forward", lambda: response_forward(ref, ro))
            raw = timed("reward model", lambda: rm(list(ro.prompts), list(ro.responses)))
        mask = ro.response_mask.float()
        adv = (raw - raw.mean()).unsqueeze(1).expand_as(mask)

        def update() -> None:
            loss = ppo_clip(new.logp, new.logp.detach(), adv, mask, 0.2).loss + \
                0.1 * value_loss(new.values, new.values.detach(), adv, mask, 0.2).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        timed("backward + Adam step", update)
        if it == 0:  # warm-up
            times = {k: [] for k in times}
    return {k: statistics.median(v) for k, v in times.items()}


def rm_top_ops(assets: Path, steps: int) -> list[tuple[str, float]]:
    from torch.profiler import profile

    from rlhfkit.algos.reward_model import bt_loss_fn
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.models import reward_model_from

    rows = [json.loads(x) for x in (assets / "pairs.jsonl").read_text().splitlines()]
    model, tok = reward_model_from(assets / "policy")
    model.train()
    pairs = [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    loss_fn = bt_loss_fn(model, tok, pairs, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(i: int) -> None:
        out = loss_fn([(8 * i + j) % len(pairs) for j in range(8)])  # wraps on small assets
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step(0)
    with profile() as prof:
        for i in range(1, steps + 1):
            step(i)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]
    return [(e.key, e.self_cpu_time_total / total) for e in top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=Path("/tmp/rlhfkit-vs-trl"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    phases = ppo_phases(a.assets, a.iterations)
    total = sum(phases.values())
    print(f"PPO iteration, median of {a.iterations} (16 completions x 32 tokens): {total * 1000:.0f} ms")
    for k, v in phases.items():
        print(f"  {k:40s} {v * 1000:7.0f} ms  {v / total:5.1%}")
    print("reward-model step (8 pairs), share of self CPU time by operator:")
    for name, frac in rm_top_ops(a.assets, 5):
        print(f"  {name:40s} {frac:5.1%}")


if __name__ == "__main__":
    main()
