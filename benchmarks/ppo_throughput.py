"""PPO samples per second and peak memory on the embedded task's tiny model (CPU).

    python benchmarks/ppo_throughput.py [--iterations 6] [--batch-prompts 64]

Builds the default tiny GPT (untrained weights: throughput does not depend on them)
and a reward model of the same shape, runs PPO iterations (rollout + scoring +
4 epochs of minibatch updates) and prints
RESULT samples_per_s=... tokens_per_s=... peak_rss_mb=... s_per_iteration=...
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--batch-prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    a = ap.parse_args()

    from rlhfkit.algos import ppo
    from rlhfkit.config import ModelConfig
    from rlhfkit.lm.forward import ValueHead, frozen_copy
    from rlhfkit.lm.models import build_tiny_gpt, save_model, train_tokenizer
    from rlhfkit.lm.scoring import RewardModel
    from rlhfkit.tasks.reviews import ReviewTask
    from rlhfkit.train.online import KLConfig, RolloutConfig, Setup, kl_controller
    from rlhfkit.train.rollouts import PromptStream, RewardNormalizer

    torch.manual_seed(0)
    task = ReviewTask(0)
    tok = train_tokenizer(task.corpus(3000), ModelConfig().vocab_size)
    policy = build_tiny_gpt(ModelConfig(), tok)
    tmp = Path(tempfile.mkdtemp(prefix="ppo_bench_"))
    save_model(policy, tok, tmp / "policy")
    setup = Setup(policy, tok, frozen_copy(policy), RewardModel(tmp / "policy"), PromptStream(task.prompts(2000, "rl"), 0),
                  None)
    cfg = ppo.PPOConfig(rollout=RolloutConfig(batch_prompts=a.batch_prompts, max_new_tokens=a.max_new_tokens),
                        kl=KLConfig(beta=0.05))
    vh = ValueHead(policy.config.hidden_size)
    opt = torch.optim.Adam(list(policy.parameters()) + list(vh.parameters()), lr=cfg.lr)
    kl_ctl, norm = kl_controller(cfg.kl), RewardNormalizer()
    times, tokens = [], []
    for it in range(a.iterations + 1):
        t = time.perf_counter()
        m = ppo.ppo_iteration(setup, policy, tok, vh, opt, kl_ctl, norm, cfg, it)
        if it > 0:  # the first iteration warms up allocators and kernels
            times.append(time.perf_counter() - t)
            tokens.append(m["rollout/length"] * a.batch_prompts)
    med = statistics.median(times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"threads={torch.get_num_threads()} iterations={len(times)} batch={a.batch_prompts} "
          f"per-iteration seconds={[round(x, 2) for x in times]}")
    print(f"RESULT samples_per_s={a.batch_prompts / med:.1f} tokens_per_s={statistics.median(tokens) / med:.0f} "
          f"peak_rss_mb={peak_mb:.0f} s_per_iteration={med:.2f}")


if __name__ == "__main__":
    main()
