"""Tokens/s and model-FLOPs utilization (MFU) of rlhfkit's reward-model, DPO and GRPO steps on
SmolLM2-135M-Instruct, at a realistic batch, in bf16 autocast (fp32 master weights, fused AdamW,
gradient norm clipped at 1: what `mixed_precision=bf16` trains with).

Each step is the library's own loss on the model, timed after warm-up with the device
synchronized, full fine-tuning:

- rm: `algos.reward_model.bt_loss_fn` on `--batch` pairs (prompt `--seq // 4` tokens, answers the
  rest of `--seq`, end-of-turn included, through the chat template), prompt run once per pair;
- dpo: `algos.dpo.dpo_loss_fn` on the same pairs, reference log-probs computed once before (as
  `rlhfkit dpo` does; not timed);
- grpo: `--batch` completions (`--batch // --group` prompts x `--group`) sampled with
  `lm.sampling.generate` (at most `3 * --seq // 4` new tokens, temperature 1), then one update of
  `ops.policy_gradient.grpo_loss` (dapo, clip 0.2, group-normalized advantages of a cheap reward):
  generation and update are timed and reported apart.

FLOPs: 6 N per token of a training step (forward and backward; Kaplan et al. 2020, PaLM app. B),
2 N per token of generation (prefill and decode), N the model's parameters (the tied embedding
counted once; attention's T-dependent FLOPs left out, as in the usual MFU). A token is one the
model runs: for rm and dpo the prompt once and both answers, for grpo every prompt and completion
token in the batch. MFU is against `--peak-tflops` (default: the H200's dense bf16 peak, 989
TFLOP/s); on a CPU that fraction means nothing, the run only checks that everything works.

    python benchmarks/gpu_mfu.py --device cuda --dtype bf16                  # 32 x 512, on a GPU
    python benchmarks/gpu_mfu.py --device cpu --dtype fp32 --batch 2 --seq 64 --group 2 \\
        --warmup 1 --steps 1 --assets /tmp/gpu-mfu-smoke                        # CPU smoke check

`--model` is `smollm2` (converted once from the package's GGUF file into `--assets`), a .gguf file,
or a Hugging Face folder. Ends with one line:

    RESULT rm_tok_s=... rm_mfu=... dpo_tok_s=... dpo_mfu=... grpo_update_tok_s=... grpo_update_mfu=...
           grpo_gen_tok_s=... grpo_gen_mfu=...
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(a: argparse.Namespace) -> contextlib.AbstractContextManager:
    if a.dtype == "bf16":
        return torch.autocast(a.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_pairs(tok: Any, batch: int, seq: int) -> list[Any]:
    """`batch` comparisons whose sequences are about `seq` tokens: the prompt (a review task prompt
    and corpus text, `seq // 4` tokens once the template has rendered it) and two answers of
    corpus text filling the rest (end-of-turn included)."""
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.tasks.reviews import ReviewTask

    task = ReviewTask(0)
    p_tokens, r_tokens = seq // 4, seq - seq // 4 - 1
    template = (tok.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True, tokenize=False)
                if tok.chat_template else "")  # what the template adds around a user turn
    overhead = len(tok(template, add_special_tokens=False)["input_ids"])
    body = max(4, p_tokens - overhead - 12)  # ~12 tokens for the task's own prompt
    need = batch * (body + 2 * r_tokens) + 1000
    stream: list[int] = []
    docs = iter(task.corpus(need // 20 + 100))
    while len(stream) < need:
        stream.extend(tok(next(docs) + " ", add_special_tokens=False)["input_ids"])
    at = 0

    def take(n: int) -> str:
        nonlocal at
        at += n
        return tok.decode(stream[at - n: at]).replace("\n", " ").strip()

    return [Comparison(f"{q} {take(body)}", take(r_tokens), take(r_tokens)) for q in task.prompts(batch)]


def timed_steps(step: Callable[[], int], a: argparse.Namespace) -> tuple[float, int]:
    """(seconds, tokens) over `a.steps` steps after `a.warmup`; `step` returns its tokens."""
    for _ in range(a.warmup):
        step()
    sync(a.device)
    t0, tokens = time.perf_counter(), 0
    for _ in range(a.steps):
        tokens += step()
    sync(a.device)
    return time.perf_counter() - t0, tokens


def optimizer(model: torch.nn.Module, a: argparse.Namespace, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0,
                             fused=a.device == "cuda")


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: Callable[[], Any],
               a: argparse.Namespace) -> None:
    with autocast(a):
        out = loss()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def pair_tokens(enc: list[Any]) -> int:
    """Tokens the shared-prompt forward runs per batch: each prompt once, both answers."""
    return sum(len(e.chosen[0]) + len(e.rejected[0]) - e.rejected[1] for e in enc)


def bench_rm(model_dir: Path, pairs: list[Any], a: argparse.Namespace) -> dict:
    from rlhfkit.algos.reward_model import bt_loss_fn
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import reward_model_from

    model, tok = reward_model_from(model_dir)
    model.to(a.device).train()
    loss_fn = bt_loss_fn(model, tok, pairs, a.seq + 8)
    tokens = pair_tokens(encode_preferences(tok, pairs, a.seq + 8))
    opt, idx = optimizer(model, a, 1e-5), list(range(len(pairs)))
    secs, n = timed_steps(lambda: train_step(model, opt, lambda: loss_fn(idx), a) or tokens, a)
    return _row("rm", model, secs, n, 6, a, pairs_per_s=a.steps * len(pairs) / secs)


def bench_dpo(model_dir: Path, pairs: list[Any], a: argparse.Namespace) -> dict:
    from rlhfkit.algos.dpo import dpo_loss_fn, pair_logprobs
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import load_policy

    model, tok = load_policy(model_dir)
    model.to(a.device)
    enc = encode_preferences(tok, pairs, a.seq + 8)
    with autocast(a):
        ref_c, ref_r = pair_logprobs(model, tok, enc, a.seq + 8, batch_size=len(pairs))
    model.train()
    loss_fn = dpo_loss_fn(model, tok, pairs, ref_c, ref_r, 0.1, a.seq + 8, encoded=enc)
    opt, idx, tokens = optimizer(model, a, 1e-6), list(range(len(pairs))), pair_tokens(enc)
    secs, n = timed_steps(lambda: train_step(model, opt, lambda: loss_fn(idx), a) or tokens, a)
    return _row("dpo", model, secs, n, 6, a, pairs_per_s=a.steps * len(pairs) / secs)


def bench_grpo(model_dir: Path, pairs: list[Any], a: argparse.Namespace) -> list[dict]:
    from _vs_trl_reward import distinct_words

    from rlhfkit.lm.models import load_policy
    from rlhfkit.lm.sampling import generate
    from rlhfkit.ops.policy_gradient import group_advantages

    model, tok = load_policy(model_dir)
    model.to(a.device)
    G, new_tokens = a.group, 3 * a.seq // 4
    prompts = [p.prompt for p in pairs[: max(1, a.batch // G)] for _ in range(G)]  # prompt-major groups
    opt = optimizer(model, a, 1e-6)
    gen_s, gen_tokens, upd_s, upd_tokens, lengths = 0.0, 0, 0.0, 0, []
    for it in range(a.warmup + a.steps):
        sync(a.device)
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad(), autocast(a):
            ro = generate(model, tok, prompts, max_new_tokens=new_tokens, temperature=1.0)
        sync(a.device)
        t1 = time.perf_counter()
        model.train()
        reward = torch.tensor(distinct_words(ro.prompts, ro.responses), device=ro.ids.device)
        adv = group_advantages(reward, G, "group")  # (N,)
        mask = ro.response_mask.float()  # (N, R)
        train_step(model, opt, functools.partial(_grpo_loss, model, ro, adv, mask, new_tokens), a)
        sync(a.device)
        if it >= a.warmup:
            gen_s += t1 - t0
            upd_s += time.perf_counter() - t1
            gen_tokens += int(ro.attention_mask.sum())  # prefill and decoded tokens (2 N each)
            upd_tokens += int(ro.attention_mask.sum())
            lengths.append(float(mask.sum(-1).mean()))
    extra = {"completions_per_s": a.steps * len(prompts) / (gen_s + upd_s),
             "mean_completion_tokens": sum(lengths) / len(lengths)}
    return [_row("grpo_gen", model, gen_s, gen_tokens, 2, a, **extra),
            _row("grpo_update", model, upd_s, upd_tokens, 6, a, **extra)]


def _grpo_loss(model: torch.nn.Module, ro: Any, adv: torch.Tensor, mask: torch.Tensor, max_len: int) -> Any:
    """One epoch of one minibatch: the sampling policy is the one updated (old = new, detached)."""
    from rlhfkit.lm.forward import response_forward
    from rlhfkit.ops.policy_gradient import grpo_loss

    logp = response_forward(model, ro).logp  # (N, R)
    return grpo_loss(logp, logp.detach(), adv, mask, loss_type="dapo", eps_low=0.2, eps_high=0.2, max_len=max_len)


def _row(name: str, model: torch.nn.Module, secs: float, tokens: int, flops_per_param: int,
         a: argparse.Namespace, **extra: float) -> dict:
    n_params = sum(p.numel() for p in model.parameters())  # shared (tied) tensors once
    flops = flops_per_param * n_params * tokens
    row = {"name": name, "tokens_per_s": tokens / secs, "tflops": flops / secs / 1e12,
           "mfu": flops / secs / (a.peak_tflops * 1e12), "params": n_params, "tokens_per_step": tokens / a.steps,
           "s_per_step": secs / a.steps, **extra}
    if a.device == "cuda":  # since this benchmark began (`fresh`)
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


@contextlib.contextmanager
def fresh(device: str) -> Iterator[None]:
    """Each benchmark counts its own peak memory; its model and optimizer go before the next loads."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        import gc

        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="`smollm2`, a .gguf file or a Hugging Face folder")
    ap.add_argument("--assets", type=Path, default=Path("/tmp/rlhfkit-gpu-mfu"), help="where a GGUF is converted")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="autocast dtype of every step")
    ap.add_argument("--batch", type=int, default=32, help="pairs per rm/dpo step; completions per grpo step")
    ap.add_argument("--seq", type=int, default=512, help="tokens per sequence (prompt a quarter)")
    ap.add_argument("--group", type=int, default=8, help="grpo: completions per prompt")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the accelerator's dense peak (H200 bf16: 989)")
    ap.add_argument("--tasks", nargs="+", default=["rm", "dpo", "grpo"], choices=["rm", "dpo", "grpo"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device (use --device cpu for a smoke check)")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers.utils import logging as hf_logging
    from vs_trl import resolve_model  # benchmarks/ is this script's folder, on sys.path

    from rlhfkit.lm.models import load_tokenizer

    hf_logging.disable_progress_bar()  # the weight-loading bars, once per step kind
    model_dir = resolve_model(a.model, a.assets)
    pairs = build_pairs(load_tokenizer(model_dir), a.batch, a.seq)
    where = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    print(f"{model_dir} on {where}, {a.dtype}: {a.batch} x {a.seq} tokens, {a.warmup} warm-up + {a.steps} timed "
          f"steps; MFU against {a.peak_tflops:g} TFLOP/s", flush=True)
    rows: list[dict] = []
    for task, fn in (("rm", bench_rm), ("dpo", bench_dpo), ("grpo", bench_grpo)):
        if task in a.tasks:
            with fresh(a.device):
                out = fn(model_dir, pairs, a)
            rows += out if isinstance(out, list) else [out]
    print("\n| step | tokens/step | s/step | tokens/s | TFLOP/s | MFU | peak GPU GB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['tokens_per_step']:.0f} | {r['s_per_step']:.3f} | {r['tokens_per_s']:.0f} | "
              f"{r['tflops']:.2f} | {r['mfu']:.1%} | {r.get('peak_gpu_gb', float('nan')):.1f} |")
    grpo = next((r for r in rows if r["name"] == "grpo_update"), None)
    if grpo:
        print(f"grpo: {grpo['completions_per_s']:.1f} completions/s, mean completion "
              f"{grpo['mean_completion_tokens']:.0f} tokens (at most {3 * a.seq // 4})")
    print("RESULT " + " ".join(f"{r['name']}_tok_s={r['tokens_per_s']:.1f} {r['name']}_mfu={r['mfu']:.4f}"
                               for r in rows))


if __name__ == "__main__":
    main()
