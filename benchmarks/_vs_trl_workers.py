"""One measurement of `benchmarks/vs_trl.py`, run in its own process so that peak memory
(ru_maxrss) belongs to it alone. Prints one JSON line:

    python benchmarks/_vs_trl_workers.py SIDE TASK ASSETS --precision fp32 --threads 2 \
        --warmup 3 --steps 20

SIDE is `ours` or `trl`; TASK is `rm`, `dpo`, `ppo`, `reinforce` (ours), `grpo`, `rloo` (TRL,
against our PPO and REINFORCE), or `grpo_like` (both sides: GRPO against GRPO, like for like;
`--grpo-beta` sets its KL weight). Throughput is measured between the end of warm-up step
`warmup` and the end of the last step, from a timestamp taken at the end of each optimizer step
(our loop's `on_step` hook or our online driver's metrics line, a TRL `TrainerCallback`), so
both sides count the same thing: the steady-state step, with batching, forward, backward and
optimizer update, and for RL with generation and scoring.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

BATCH_PAIRS = 8  # pairs (RM, DPO) per optimizer step
RL_PROMPTS, RL_COMPLETIONS, RL_NEW_TOKENS, RL_BETA = 8, 2, 32, 0.05
MAX_LEN = 128
# GRPO like for like (`grpo_like`): G completions for each of GRPO_PROMPTS prompts per step, as
# many completions per step as the other online rows; the reward is one shared function.
GRPO_PROMPTS, GRPO_G, GRPO_NEW_TOKENS, GRPO_LOSS, GRPO_EPS, GRPO_LR = 4, 4, 32, "dapo", 0.2, 1e-6
GRPO_REWARD = "_vs_trl_reward:distinct_words"  # module:function, importable from benchmarks/


def _rows(assets: Path) -> list[dict]:
    return [json.loads(line) for line in (assets / "pairs.jsonl").read_text().splitlines()]


def _rate(stamps: list[float], warmup: int, units_per_step: float) -> tuple[float, float]:
    """(units per second, seconds) over the steps after warm-up."""
    if len(stamps) <= warmup:
        raise RuntimeError(f"only {len(stamps)} steps were timed; need more than {warmup}")
    dt = stamps[-1] - stamps[warmup - 1] if warmup else stamps[-1] - stamps[0]
    n = len(stamps) - warmup if warmup else len(stamps) - 1
    return n * units_per_step / dt, dt


# ---------------------------------------------------------------- ours


def _ours_fit(model, tok, n: int, loss_fn, steps: int, precision: str, lr: float) -> list[float]:
    from rlhfkit.logging import MetricsLogger
    from rlhfkit.runtime import RunDir
    from rlhfkit.train.supervised import OptimConfig, fit

    stamps: list[float] = []
    cfg = OptimConfig(lr=lr, batch_size=BATCH_PAIRS, max_steps=steps, checkpoint_every=0, log_every=10_000,
                      mixed_precision="bf16" if precision == "bf16" else "fp32", warmup_frac=0.0)
    with tempfile.TemporaryDirectory() as d, MetricsLogger(None, []) as logger:
        fit(RunDir(Path(d)), model, tok, n, loss_fn, cfg, 0, logger, "bench", device="cpu",
            on_step=lambda step: stamps.append(time.perf_counter()) or {})
    return stamps


def ours_rm(assets: Path, a: argparse.Namespace) -> dict:
    from rlhfkit.algos.reward_model import bt_loss_fn
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.models import reward_model_from

    pairs = [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in _rows(assets)]
    model, tok = reward_model_from(assets / "policy")
    stamps = _ours_fit(model, tok, len(pairs), bt_loss_fn(model, tok, pairs, MAX_LEN), a.warmup + a.steps,
                       a.precision, 1e-5)
    rate, dt = _rate(stamps, a.warmup, BATCH_PAIRS)
    return {"pairs_per_s": rate, "timed_s": dt}


def ours_dpo(assets: Path, a: argparse.Namespace) -> dict:
    """DPO's reference log-probs are computed once before training; their time is charged to
    the timed steps in proportion (the timed pairs' share of all pairs)."""
    from rlhfkit.algos.dpo import dpo_loss_fn, pair_logprobs
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import load_policy

    pairs = [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in _rows(assets)]
    model, tok = load_policy(assets / "policy")
    t0 = time.perf_counter()
    enc = encode_preferences(tok, pairs, MAX_LEN)
    ref_c, ref_r = pair_logprobs(model, tok, enc, MAX_LEN, batch_size=BATCH_PAIRS)
    ref_s = time.perf_counter() - t0
    model.train()
    loss_fn = dpo_loss_fn(model, tok, pairs, ref_c, ref_r, 0.1, MAX_LEN, encoded=enc)
    stamps = _ours_fit(model, tok, len(pairs), loss_fn, a.warmup + a.steps, a.precision, 1e-6)
    timed_pairs = a.steps * BATCH_PAIRS
    _, dt = _rate(stamps, a.warmup, BATCH_PAIRS)
    dt += ref_s * timed_pairs / len(pairs)
    return {"pairs_per_s": timed_pairs / dt, "timed_s": dt, "reference_s": ref_s}


def _ours_online(assets: Path, a: argparse.Namespace, kind: str) -> dict:
    """Our PPO or REINFORCE (leave-one-out, i.e. RLOO) run through its own `run`; one metrics
    line is logged per iteration, which is the timestamp taken."""
    from rlhfkit.train.online import KLConfig, RolloutConfig

    stamps = _stamp_logger()
    n_iter = a.warmup + a.steps
    with tempfile.TemporaryDirectory() as d:
        if kind == "ppo":  # one completion per prompt: as many prompts as TRL's completions
            from rlhfkit.algos.ppo import PPOConfig, run

            rc = RolloutConfig(prompts=str(assets / "prompts.txt"), batch_prompts=RL_PROMPTS * RL_COMPLETIONS,
                               max_new_tokens=RL_NEW_TOKENS, rm_max_len=MAX_LEN)
            cfg = PPOConfig(policy=str(assets / "policy"), reward_model=str(assets / "rm"), rollout=rc,
                            kl=KLConfig(beta=RL_BETA), iterations=n_iter, ppo_epochs=1,
                            minibatch=RL_PROMPTS * RL_COMPLETIONS, checkpoint_every=0, out=d, device="cpu",
                            mixed_precision="bf16" if a.precision == "bf16" else "fp32")
            per_iter = RL_PROMPTS * RL_COMPLETIONS
        else:
            from rlhfkit.algos.reinforce import ReinforceConfig, run

            rc = RolloutConfig(prompts=str(assets / "prompts.txt"), batch_prompts=RL_PROMPTS,
                               max_new_tokens=RL_NEW_TOKENS, rm_max_len=MAX_LEN)
            cfg = ReinforceConfig(policy=str(assets / "policy"), reward_model=str(assets / "rm"), rollout=rc,
                                  kl=KLConfig(beta=RL_BETA), samples_per_prompt=RL_COMPLETIONS,
                                  iterations=n_iter, checkpoint_every=0, out=d, device="cpu",
                                  mixed_precision="bf16" if a.precision == "bf16" else "fp32")
            per_iter = RL_PROMPTS * RL_COMPLETIONS
        run(cfg)
    rate, dt = _rate(stamps[:n_iter], a.warmup, per_iter)
    return {"completions_per_s": rate, "prompts_per_s": rate / RL_COMPLETIONS, "timed_s": dt}


def _stamp_logger() -> list[float]:
    """Timestamps of our online driver's metrics lines: one per iteration, after its update."""
    from rlhfkit import logging as rlog

    stamps: list[float] = []
    original = rlog.MetricsLogger.log

    def stamped(self, metrics, step):  # noqa: ANN001, ANN202
        stamps.append(time.perf_counter())
        return original(self, metrics, step)

    rlog.MetricsLogger.log = stamped
    return stamps


def ours_grpo(assets: Path, a: argparse.Namespace) -> dict:
    """Our GRPO (`rlhfkit grpo`) with TRL GRPOTrainer's settings: the prompts file as the task
    (no gold scorer, as in TRL), the shared reward function, one epoch of one minibatch per
    rollout batch; with beta > 0 the KL is a loss term with the bias-corrected k3 (TRL's
    `use_bias_correction_kl`, on by default)."""
    from rlhfkit.algos.grpo import GRPOConfig, run
    from rlhfkit.train.online import RolloutConfig

    stamps = _stamp_logger()
    n_iter = a.warmup + a.steps
    prompts = str(assets / "prompts.txt")
    with tempfile.TemporaryDirectory() as d:
        rc = RolloutConfig(task=prompts, prompts=prompts, batch_prompts=GRPO_PROMPTS, max_new_tokens=GRPO_NEW_TOKENS,
                           temperature=1.0)
        cfg = GRPOConfig(policy=str(assets / "policy"), rewards=[f"fn:{GRPO_REWARD}"], rollout=rc, group_size=GRPO_G,
                         scale_rewards="group", loss_type=GRPO_LOSS, epsilon_low=GRPO_EPS, epsilon_high=GRPO_EPS,
                         epochs=1, minibatch=0, beta=a.grpo_beta, kl_mode="loss", kl_estimator="k3_is",
                         mask_truncated=False, iterations=n_iter, lr=GRPO_LR, grad_clip=1.0, checkpoint_every=0,
                         out=d, device="cpu", mixed_precision="bf16" if a.precision == "bf16" else "fp32",
                         gradient_checkpointing=a.gradient_checkpointing)
        run(cfg)
    per_iter = GRPO_PROMPTS * GRPO_G
    rate, dt = _rate(stamps[:n_iter], a.warmup, per_iter)
    return {"completions_per_s": rate, "prompts_per_s": rate / GRPO_G, "timed_s": dt, "beta": a.grpo_beta}


# ---------------------------------------------------------------- TRL


def _trl_common(a: argparse.Namespace, out: str) -> dict:
    return {"output_dir": out, "max_steps": a.warmup + a.steps, "logging_steps": 10_000, "save_strategy": "no",
            "report_to": "none", "use_cpu": True, "bf16": a.precision == "bf16",
            "gradient_checkpointing": a.gradient_checkpointing, "dataloader_num_workers": 0, "seed": 0,
            "disable_dropout": True, "lr_scheduler_type": "constant"}


def _timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            self.stamps.append(time.perf_counter())

    return Timer()


def _tok(assets: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets / "policy")


def trl_rm(assets: Path, a: argparse.Namespace) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    tok = _tok(assets)
    model = AutoModelForSequenceClassification.from_pretrained(assets / "policy", num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = RewardConfig(per_device_train_batch_size=BATCH_PAIRS, learning_rate=1e-5, max_length=MAX_LEN,
                            **_trl_common(a, d))
        RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(_rows(assets)), processing_class=tok,
                      callbacks=[timer]).train()
    rate, dt = _rate(timer.stamps, a.warmup, BATCH_PAIRS)
    return {"pairs_per_s": rate, "timed_s": dt}


def trl_dpo(assets: Path, a: argparse.Namespace) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tok = _tok(assets)
    model = AutoModelForCausalLM.from_pretrained(assets / "policy")
    ref = AutoModelForCausalLM.from_pretrained(assets / "policy")
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = DPOConfig(per_device_train_batch_size=BATCH_PAIRS, learning_rate=1e-6, beta=0.1, max_length=MAX_LEN,
                         **_trl_common(a, d))
        DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(_rows(assets)),
                   processing_class=tok, callbacks=[timer]).train()
    rate, dt = _rate(timer.stamps, a.warmup, BATCH_PAIRS)
    return {"pairs_per_s": rate, "timed_s": dt}


def trl_online(assets: Path, a: argparse.Namespace, kind: str) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    if kind == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    tok = _tok(assets)
    rm = AutoModelForSequenceClassification.from_pretrained(assets / "rm", num_labels=1)
    prompts = (assets / "prompts.txt").read_text().splitlines()
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        common = _trl_common(a, d)
        args = Config(per_device_train_batch_size=RL_PROMPTS * RL_COMPLETIONS, num_generations=RL_COMPLETIONS,
                      max_completion_length=RL_NEW_TOKENS, beta=RL_BETA, learning_rate=1e-6, temperature=1.0,
                      **common)
        Trainer(model=str(assets / "policy"), reward_funcs=rm, args=args,
                train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok,
                reward_processing_classes=tok, callbacks=[timer]).train()
    rate, dt = _rate(timer.stamps, a.warmup, RL_PROMPTS * RL_COMPLETIONS)
    return {"completions_per_s": rate, "prompts_per_s": rate / RL_COMPLETIONS, "timed_s": dt}


def trl_grpo(assets: Path, a: argparse.Namespace) -> dict:
    """TRL's GRPOTrainer with our GRPO's settings: per step, GRPO_PROMPTS prompts x GRPO_G
    generations (`per_device_train_batch_size` counts completions; one generation per optimizer
    step), generated by `model.generate` (no vLLM), scored by the shared reward function."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    module, _, attr = GRPO_REWARD.partition(":")
    reward = getattr(importlib.import_module(module), attr)  # benchmarks/ is on sys.path: this script's folder
    tok = _tok(assets)
    prompts = (assets / "prompts.txt").read_text().splitlines()
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = GRPOConfig(per_device_train_batch_size=GRPO_PROMPTS * GRPO_G, num_generations=GRPO_G,
                          max_completion_length=GRPO_NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
                          loss_type=GRPO_LOSS, scale_rewards="group", epsilon=GRPO_EPS, epsilon_high=GRPO_EPS,
                          num_iterations=1, beta=a.grpo_beta, use_bias_correction_kl=True,
                          mask_truncated_completions=False, learning_rate=GRPO_LR, max_grad_norm=1.0,
                          use_vllm=False, log_completions=False, **_trl_common(a, d))
        GRPOTrainer(model=str(assets / "policy"), reward_funcs=[reward], args=args,
                    train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok,
                    callbacks=[timer]).train()
    rate, dt = _rate(timer.stamps, a.warmup, GRPO_PROMPTS * GRPO_G)
    return {"completions_per_s": rate, "prompts_per_s": rate / GRPO_G, "timed_s": dt, "beta": a.grpo_beta}


WORKERS = {
    ("ours", "rm"): ours_rm, ("ours", "dpo"): ours_dpo,
    ("ours", "ppo"): lambda p, a: _ours_online(p, a, "ppo"),
    ("ours", "reinforce"): lambda p, a: _ours_online(p, a, "reinforce"),
    ("ours", "grpo_like"): ours_grpo, ("trl", "grpo_like"): trl_grpo,
    ("trl", "rm"): trl_rm, ("trl", "dpo"): trl_dpo,
    ("trl", "grpo"): lambda p, a: trl_online(p, a, "grpo"),
    ("trl", "rloo"): lambda p, a: trl_online(p, a, "rloo"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["ours", "trl"])
    ap.add_argument("task")
    ap.add_argument("assets", type=Path)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--grpo-beta", type=float, default=0.0, help="grpo_like: KL weight on both sides")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RLHFKIT_PROGRESS", "0")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    res = WORKERS[(a.side, a.task)](a.assets, a)
    res.update({"side": a.side, "task": a.task, "precision": a.precision, "threads": a.threads,
                "gradient_checkpointing": a.gradient_checkpointing, "wall_s": time.time() - t0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    sys.stdout.write("RESULT_JSON " + json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
