"""rlhfkit vs TRL, side by side on the same tiny GPT-2, data, batch sizes and steps.

Measures, each in a fresh process (so peak memory is the trainer's own), alternating the
two sides (ours, TRL, ours, TRL, ...) so that both see the same machine:

- reward model: pairs/s (8 pairs per step, 32 + 32 tokens);
- DPO: pairs/s (the same batches; our reference log-probs, computed once before training,
  are charged to the timed steps in proportion);
- online RL with generation: 8 prompts x 2 completions of 32 new tokens, KL 0.05, one
  gradient step per batch: our REINFORCE with the leave-one-out baseline against TRL's
  RLOO (the same estimator), and our PPO (16 prompts x 1 completion, 1 epoch) against
  TRL's GRPO; reported in completions/s and prompts/s;
- GRPO like for like (`--tasks grpo`): our `rlhfkit grpo` (algos/grpo.py) against TRL's
  GRPOTrainer, in completions/s over the timed steps after warm-up and peak RSS. Per step both
  sample G = 4 completions for each of 4 prompts (16 completions, as in the rows above) of at
  most 32 new tokens at temperature 1 (no top-k/top-p) from the same GPT-2 and tokenizer and
  the same prompts file, score them with one shared reward function
  (`benchmarks/_vs_trl_reward.py:distinct_words`, the share of distinct words; our
  `--reward fn:...`, TRL's `reward_funcs=[...]`: no reward model on either side), and take one
  optimizer step on them: group-normalized advantages (`scale_rewards="group"`), the `dapo`
  loss (token mean over the batch; both libraries' default), clipping 0.2 on both sides of the
  ratio, one epoch of one minibatch (TRL `num_iterations=1`, one generation per step),
  truncated completions kept in the loss, gradient norm clipped at 1, learning rate 1e-6,
  dropout off, no gold scoring (our task is the prompts file). The KL weight is 0 by default
  (both libraries' default: neither loads a reference model); `--grpo-beta B` runs both with
  the KL as a loss term with the bias-corrected k3 estimator (ours `kl_estimator="k3_is"`,
  TRL's `use_bias_correction_kl=True`). TRL generates with `model.generate` (`use_vllm=False`;
  there is no vLLM on CPU), as we do (`rollout.backend=hf`). Remaining differences: TRL's
  optimizer is AdamW with weight decay 0 (ours Adam: the same update), and TRL's loss also
  computes per-token entropies for its logs;

and the machine's matmul peak at the model's shapes (a `torch.mm` loop, fp32 and bf16), to
express each supervised step as model FLOP/s and as a fraction of that peak.

TRL lives in its own virtual environment that also sees rlhfkit's (torch, transformers,
datasets, accelerate and rlhfkit itself come from there; pip adds only trl):

    python -m venv /tmp/trl-venv   # with the Python of the environment rlhfkit is installed in
    SITE=$(python -c "import site; print(site.getsitepackages()[0])")
    echo "import site; site.addsitedir('$SITE')" > /tmp/trl-venv/lib/python3.11/site-packages/_parent.pth
    /tmp/trl-venv/bin/pip install trl==1.16.0
    /tmp/trl-venv/bin/python benchmarks/vs_trl.py --repeats 3

Run it on an otherwise idle machine. A quick check that every task runs end to end (numbers
meaningless; keep such runs out of the saved results and the default assets):

    /tmp/trl-venv/bin/python benchmarks/vs_trl.py --repeats 1 --warmup 1 --steps 2 \
        --assets /tmp/vs-trl-smoke --out /tmp/vs-trl-smoke.json

Ends with one line (`mem_ratio`: the highest ours/TRL peak RSS over the trainers measured,
`grpo_mem_ratio` that of GRPO alone):
    RESULT rm_ratio=... dpo_ratio=... rl_ratio=... rloo_ratio=... grpo_ratio=... mem_ratio=...
           grpo_mem_ratio=... rm_peak_frac=... dpo_peak_frac=...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_vs_trl_workers.py"
D_MODEL, N_LAYER, N_HEAD, VOCAB, SEQ = 256, 4, 4, 8000, 64


def build_assets(out: Path, n_pairs: int, n_prompts: int) -> dict:
    """Tokenizer, GPT-2 (4 x 256, vocab 8000, no dropout), a reward model with a fresh head,
    pairs of 32-token prompt and responses, and RL prompts: all from the embedded corpus.
    Assets already in `out` are reused when they hold at least as many pairs and prompts."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from rlhfkit.lm.models import train_tokenizer
    from rlhfkit.tasks.reviews import ReviewTask

    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("n_pairs", 0) >= n_pairs and meta.get("n_prompts", 0) >= n_prompts:
            return meta
    out.mkdir(parents=True, exist_ok=True)
    corpus = ReviewTask(0).corpus(6000)
    tok = train_tokenizer(corpus, VOCAB)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=2 * SEQ, n_embd=D_MODEL, n_layer=N_LAYER, n_head=N_HEAD,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    for name, cls in (("policy", GPT2LMHeadModel), ("rm", GPT2ForSequenceClassification)):
        model = cls(cfg if name == "policy" else GPT2Config(**{**cfg.to_dict(), "num_labels": 1}))
        model.save_pretrained(out / name)
        tok.save_pretrained(out / name)
    stream = [i for ids in tok(corpus)["input_ids"] for i in ids]
    half = SEQ // 2

    def window(k: int) -> str:
        return tok.decode(stream[k * half: (k + 1) * half]).replace("\n", " ")

    rows = [{"prompt": window(3 * i), "chosen": window(3 * i + 1), "rejected": window(3 * i + 2)}
            for i in range(n_pairs)]
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "prompts.txt").write_text("\n".join(window(3 * n_pairs + i) for i in range(n_prompts)) + "\n")
    lengths = [len(tok(r["prompt"] + r["chosen"])["input_ids"]) for r in rows]
    meta = {"n_pairs": n_pairs, "n_prompts": n_prompts, "vocab_tokenizer": len(tok),
            "mean_tokens": sum(lengths) / len(lengths),
            "mean_response_tokens": sum(len(tok(r["chosen"])["input_ids"]) + 1 for r in rows) / len(rows)}
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def matmul_peaks(threads: int) -> dict[str, float]:
    """GFLOP/s of torch.mm at the model's shapes (16 sequences x 64 tokens = 1024 rows),
    FLOP-weighted over the four matmuls of a block; fp32 and bf16."""
    import torch

    torch.set_num_threads(threads)
    rows = 16 * SEQ
    shapes = [(rows, D_MODEL, 3 * D_MODEL), (rows, D_MODEL, D_MODEL), (rows, D_MODEL, 4 * D_MODEL),
              (rows, 4 * D_MODEL, D_MODEL)]
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        flops, secs = 0.0, 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.mm(a, b)
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.4:
                torch.mm(a, b)
                reps += 1
            secs += (time.perf_counter() - t0) / reps
            flops += 2.0 * m * k * n
        out[name] = flops / secs / 1e9
    return out


def model_flops(meta: dict) -> dict[str, float]:
    """FLOPs per pair (Kaplan/PaLM accounting: 6 N per trained token, 2 N per forward-only token,
    attention 12 L d T per trained token; the LM head only where a loss reads logits, the
    response tokens). `*_full`: two full sequences per pair, as TRL runs them; `*_ours`: what
    our trainers execute, the prompt once and both responses (P + 2R tokens), and for the
    reward model the last block's feed-forward at the two scored tokens only."""
    n_block = 12 * N_LAYER * D_MODEL ** 2
    T, R = meta["mean_tokens"] + 1, meta["mean_response_tokens"]  # + EOS
    P = T - R
    per_tok_train = 6 * n_block + 12 * N_LAYER * D_MODEL * T
    head_train = 6 * D_MODEL * VOCAB * R  # per sequence
    out = {}
    for name, tokens in (("full", 2 * T), ("ours", P + 2 * R)):
        train = tokens * per_tok_train
        out[f"rm_{name}"] = train - (6 * 8 * D_MODEL ** 2 * (tokens - 2) if name == "ours" else 0)
        out[f"dpo_{name}"] = train + 2 * head_train + (train + 2 * head_train) / 3  # + reference forward
    return out


def run_worker(side: str, task: str, assets: Path, a: argparse.Namespace, precision: str, gc: bool) -> dict:
    cmd = [sys.executable, str(WORKER), side, task, str(assets), "--precision", precision, "--threads",
           str(a.threads), "--warmup", str(a.warmup), "--steps", str(a.steps), "--grpo-beta", str(a.grpo_beta)]
    if gc:
        cmd.append("--gradient-checkpointing")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "RLHFKIT_PROGRESS": "0",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            return json.loads(line[len("RESULT_JSON "):])
    raise RuntimeError(f"{side} {task} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def settings(peaks: dict[str, float]) -> tuple[list[tuple[str, str, bool]], str]:
    """(side, precision, gradient checkpointing) settings to try; bf16 only where it can pay."""
    base = [("ours", "fp32", False), ("trl", "fp32", False)]
    if peaks["bf16"] > 1.2 * peaks["fp32"]:
        return base + [("ours", "bf16", False), ("trl", "bf16", False), ("trl", "bf16", True)], \
            "bf16 matmul is faster here: each side is tried in fp32 and bf16 (TRL also with its default " \
            "gradient checkpointing), and its fastest setting is kept"
    return base, (f"bf16 matmul runs at {peaks['bf16']:.1f} GFLOP/s here against {peaks['fp32']:.1f} in fp32 "
                  "(no bf16 units on this CPU), so both sides run fp32, their fastest setting")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=Path("/tmp/rlhfkit-vs-trl"))
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tasks", nargs="+", default=["rm", "dpo", "rl", "grpo"], choices=["rm", "dpo", "rl", "grpo"])
    ap.add_argument("--grpo-beta", type=float, default=0.0,
                    help="GRPO's KL weight, the same on both sides (0: no reference model on either)")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "vs_trl.json")
    ap.add_argument("--report-only", action="store_true", help="print the report of the runs saved in --out")
    a = ap.parse_args()
    if a.report_only:
        saved = json.loads(a.out.read_text())
        for k in ("threads", "warmup", "steps"):
            setattr(a, k, saved[k])
        a.grpo_beta = saved.get("grpo_beta", 0.0)
        report(saved["results"], saved["peaks_gflops"], saved["meta"], a)
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        sys.exit("TRL is not importable here: run this script with the Python of a venv that has trl==1.16.0 "
                 "(see the module docstring)")
    n = (a.warmup + a.steps) * 8
    meta = build_assets(a.assets, n_pairs=n, n_prompts=n)
    peaks = matmul_peaks(a.threads)
    tries, why = settings(peaks)
    print(f"matmul peak at the model's shapes, {a.threads} threads: fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s\n{why}", flush=True)
    jobs = [(t, t) for t in a.tasks if t in ("rm", "dpo")]
    if "rl" in a.tasks:
        jobs += [("rl", "reinforce"), ("rl", "rloo"), ("rl", "ppo"), ("rl", "grpo")]
    if "grpo" in a.tasks:  # GRPO against GRPO, both sides (the worker's `grpo` is TRL's, against our PPO)
        jobs += [("grpo", "grpo_like")]
    results: list[dict] = []
    for r in range(a.repeats):
        for group, task in jobs:
            for side, precision, gc in tries:
                if (task in ("reinforce", "ppo") and side == "trl") or (task in ("rloo", "grpo") and side == "ours"):
                    continue
                res = run_worker(side, task, a.assets, a, precision, gc)
                res["round"] = r
                results.append(res)
                rate = res.get("pairs_per_s", res.get("completions_per_s"))
                print(f"  round {r}: {side:4s} {task:9s} {precision}{' +gc' if gc else ''}: {rate:7.2f}/s, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    report(results, peaks, meta, a)


def _best(results: list[dict], side: str, task: str, key: str) -> dict:
    """The fastest setting's median over rounds, with its median peak memory."""
    by_setting: dict[tuple, list[dict]] = {}
    for r in results:
        if r["side"] == side and r["task"] == task:
            by_setting.setdefault((r["precision"], r["gradient_checkpointing"]), []).append(r)
    best = max(by_setting.items(), key=lambda kv: statistics.median(x[key] for x in kv[1]))
    runs = best[1]
    return {"rate": statistics.median(x[key] for x in runs), "mem": statistics.median(x["peak_rss_mb"] for x in runs),
            "setting": f"{best[0][0]}{' + gradient checkpointing' if best[0][1] else ''}", "n": len(runs),
            "min": min(x[key] for x in runs), "max": max(x[key] for x in runs)}


def report(results: list[dict], peaks: dict[str, float], meta: dict, a: argparse.Namespace) -> None:
    flops = model_flops(meta)
    peak_best = max(peaks.values())
    rows, line = [], {}
    pairs = [("rm", "rm", "rm", "pairs_per_s"), ("dpo", "dpo", "dpo", "pairs_per_s"),
             ("rl (RLOO)", "reinforce", "rloo", "completions_per_s"),
             ("rl (PPO vs GRPO)", "ppo", "grpo", "completions_per_s"),
             (f"GRPO (beta {a.grpo_beta:g})", "grpo_like", "grpo_like", "completions_per_s")]
    mem_ratios = []
    for label, ours_task, trl_task, key in pairs:
        if not any(r["task"] == ours_task for r in results):
            continue
        o, t = _best(results, "ours", ours_task, key), _best(results, "trl", trl_task, key)
        ratio = o["rate"] / t["rate"]
        mem_ratios.append(o["mem"] / t["mem"])
        rows.append((label, o, t, ratio))
        if ours_task == "grpo_like":
            line["grpo_ratio"] = ratio
            line["grpo_mem_ratio"] = o["mem"] / t["mem"]
        if f"{ours_task}_ours" in flops:
            done = o["rate"] * flops[f"{ours_task}_ours"] / 1e9  # what our trainer executes
            equiv = o["rate"] * flops[f"{ours_task}_full"] / 1e9  # the same pairs as two full sequences
            trl = t["rate"] * flops[f"{ours_task}_full"] / 1e9
            print(f"{label}: ours executes {done:.1f} GFLOP/s = {done / peaks['fp32']:.0%} of the fp32 matmul peak "
                  f"({done / peaks['bf16']:.0%} of the bf16 one); counted as two full sequences per pair "
                  f"{equiv:.1f} GFLOP/s; TRL {trl:.1f} GFLOP/s = {trl / peaks['fp32']:.0%} of the fp32 peak")
            line[f"{ours_task}_ratio"] = ratio
            line[f"{ours_task}_peak_frac"] = done / peak_best
    print(f"\n| trainer | ours | TRL | ratio | ours peak RSS | TRL peak RSS |\n|---|---|---|---|---|---|")
    for label, o, t, ratio in rows:
        u = "pairs/s" if label in ("rm", "dpo") else "completions/s"
        print(f"| {label} | {o['rate']:.2f} {u} ({o['setting']}) | {t['rate']:.2f} {u} ({t['setting']}) | "
              f"{ratio:.2f}x | {o['mem']:.0f} MB | {t['mem']:.0f} MB |")
    rl = [r for r in rows if r[0].startswith("rl")]
    if rl:
        ours_ppo = next((r for r in rl if "PPO" in r[0]), None)
        trl_best = max(r[2]["rate"] for r in rl)
        line["rl_ratio"] = (ours_ppo[1]["rate"] if ours_ppo else rl[0][1]["rate"]) / trl_best
        line["rloo_ratio"] = next((r[3] for r in rl if "RLOO" in r[0]), float("nan"))
    line["mem_ratio"] = max(mem_ratios) if mem_ratios else float("nan")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"peaks_gflops": peaks, "meta": meta, "model_flops_per_pair": flops,
                                 "threads": a.threads, "warmup": a.warmup, "steps": a.steps,
                                 "grpo_beta": a.grpo_beta,
                                 "results": results, "summary": line}, indent=2))
    keys = ["rm_ratio", "dpo_ratio", "rl_ratio", "rloo_ratio", "grpo_ratio", "mem_ratio", "grpo_mem_ratio",
            "rm_peak_frac", "dpo_peak_frac"]
    print("RESULT " + " ".join(f"{k}={line[k]:.3f}" for k in keys if k in line))


if __name__ == "__main__":
    main()
