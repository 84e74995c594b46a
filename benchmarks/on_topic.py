"""Does the SFT policy name the item it is asked about? pretrain -> SFT as the quickstart runs them.

    python benchmarks/on_topic.py [--seed N] [--out DIR] [--prompts 100] [--fast] [--sft-lr LR]
                                 [--pretrain-docs N] [--sft-demos N]

Runs the quickstart's pretrain and SFT stages with its default settings (`--fast`:
`rlhfkit quickstart --fast`'s), samples one response (temperature 1, as the
evaluation does) for each of `--prompts` held-out eval prompts, and prints the
fraction that name the asked item (`tasks.reviews.names_item`). The last line is
RESULT on_topic_sft=... seconds=... pretrain_steps=... sft_steps=...
where seconds is the wall time of pretrain + SFT (the machine's load inflates it;
compare step counts across machines).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("RLHFKIT_PROGRESS", "0")
PRETRAIN_LR, SFT_LR = 2e-3, 5e-4  # as pipeline.run sets them


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompts", type=int, default=100, help="held-out eval prompts to sample")
    ap.add_argument("--fast", action="store_true", help="the stages of `rlhfkit quickstart --fast`")
    ap.add_argument("--sft-lr", type=float, default=SFT_LR, help="SFT learning rate (the quickstart's: %(default)g)")
    ap.add_argument("--pretrain-docs", type=int, default=None, help="override the quickstart's pretrain_docs")
    ap.add_argument("--sft-demos", type=int, default=None, help="override the quickstart's sft_demos")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    from rlhfkit.algos import pretrain, sft
    from rlhfkit.evaluate import sample_policy
    from rlhfkit.lm.models import load_policy
    from rlhfkit.pipeline import QuickstartConfig, fast_config
    from rlhfkit.runtime import seed_everything
    from rlhfkit.tasks.reviews import ReviewTask, names_item

    out = Path(a.out or tempfile.mkdtemp(prefix="on_topic_"))
    cfg = QuickstartConfig(seed=a.seed, out=str(out), device=a.device)
    if a.fast:
        cfg = fast_config(replace(cfg, fast=True))
    cfg = replace(cfg, pretrain_docs=a.pretrain_docs or cfg.pretrain_docs, sft_demos=a.sft_demos or cfg.sft_demos)
    t0 = time.time()
    pre = pretrain.run(pretrain_config(cfg, out))
    t1 = time.time()
    sft_s = sft.run(sft_config(cfg, out, pre["final"], a.sft_lr))
    t2 = time.time()

    seed_everything(a.seed)
    prompts = ReviewTask(a.seed).prompts(a.prompts, "eval")
    model, tok = load_policy(sft_s["final"])
    responses, _ = sample_policy(model, tok, prompts, cfg.max_new_tokens)
    hits = [names_item(p, r) for p, r in zip(prompts, responses, strict=True)]
    for p, r, h in list(zip(prompts, responses, hits))[:8]:
        print(f"{'+' if h else '-'} {p!r} -> {r.strip()!r}")
    frac = sum(hits) / len(hits)
    print(f"pretrain: {pre['steps']} steps, {pre['train_tokens']} tokens, {t1 - t0:.0f} s; "
          f"sft: {sft_s['steps']} steps on {sft_s['demonstrations']} demonstrations, {t2 - t1:.0f} s; "
          f"held-out response NLL {sft_s['heldout_nll']:.3f}")
    print(f"run folder: {out}")
    print(f"RESULT on_topic_sft={frac:.3f} seconds={t2 - t0:.1f} pretrain_steps={pre['steps']} "
          f"sft_steps={sft_s['steps']}")


# The two stage configs as `pipeline.run` builds them; keep in step with it.
def pretrain_config(cfg, out: Path):
    from rlhfkit.train.supervised import OptimConfig
    from rlhfkit.algos.pretrain import PretrainConfig

    small = OptimConfig(checkpoint_every=0, log_every=10)
    return PretrainConfig(out=str(out / "pretrain"), model=cfg.model, corpus_docs=cfg.pretrain_docs,
                          task_seed=cfg.seed, seed=cfg.seed, device=cfg.device,
                          optim=replace(small, lr=PRETRAIN_LR, batch_size=32, epochs=cfg.pretrain_epochs,
                                        checkpoint_every=200))


def sft_config(cfg, out: Path, base: str, lr: float = SFT_LR):
    from rlhfkit.train.supervised import OptimConfig
    from rlhfkit.algos.sft import SFTConfig

    small = OptimConfig(checkpoint_every=0, log_every=10)
    return SFTConfig(out=str(out / "sft"), model=base, n_demos=cfg.sft_demos, task_seed=cfg.seed, seed=cfg.seed,
                     device=cfg.device, optim=replace(small, lr=lr, epochs=2.0))


if __name__ == "__main__":
    main()
