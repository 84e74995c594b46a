"""One measurement of `benchmarks/vs_trl.py`, run in its own process so that peak memory
(ru_maxrss) belongs to it alone. Prints one JSON line:

    python benchmarks/_vs_trl_workers.py SIDE TASK ASSETS --precision fp32 --threads 2 \
        --warmup 3 --steps 20

SIDE is `ours` or `trl`; TASK is `rm`, `dpo`, `ipo` (our DPO trainer with the IPO loss against
TRL's DPOTrainer with `loss_type=["ipo"]`), `kto` (our KTO against TRL's KTOTrainer, on the pairs
unpaired: chosen desirable, rejected undesirable, `2 x --batch-pairs` examples per step), `ppo`,
`reinforce` (ours), `grpo`, `rloo` (TRL, against our PPO and REINFORCE), or `grpo_like` (both
sides: GRPO against GRPO, like for like; `--grpo-beta` sets its KL weight); for `vs_trl.py
--model`, also `rm_lora` and `dpo_lora` (LoRA on both sides: peft `LoraConfig(r=16, lora_alpha=32,
lora_dropout=0)` on every linear projection of a Llama-style block, `LORA_TARGETS`; the reward head
trains whole). Throughput is measured between the end of warm-up step `warmup` and the end of the
last step, from a timestamp taken at the end of each optimizer step (our loop's `on_step` hook or
our online driver's metrics line, a TRL `TrainerCallback`), so both sides count the same thing: the
steady-state step, with batching, forward, backward and optimizer update, and for RL with
generation and scoring.

`--policy` (default ASSETS/policy), `--batch-pairs`, `--max-len`, `--grpo-prompts`, `--grpo-g`,
`--grpo-new-tokens` and `--device` are what `vs_trl.py --model` sets; their defaults are the tiny
GPT-2 rows'. With a chat template on the tokenizer, TRL gets conversational datasets (prompt and
answers as messages) and we get the same prompt as text, which rlhfkit renders through the same
template; each side reports the token counts it actually trains on (`tokens`).
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BATCH_PAIRS = 8  # pairs (RM, DPO, IPO) per optimizer step; KTO takes both answers of as many pairs
PAIR_BETA = 0.1  # DPO's, IPO's (tau) and KTO's beta, the same on both sides
RL_PROMPTS, RL_COMPLETIONS, RL_NEW_TOKENS, RL_BETA = 8, 2, 32, 0.05
MAX_LEN = 128
# GRPO like for like (`grpo_like`): G completions for each of GRPO_PROMPTS prompts per step, as
# many completions per step as the other online rows; the reward is one shared function.
GRPO_PROMPTS, GRPO_G, GRPO_NEW_TOKENS, GRPO_LOSS, GRPO_EPS, GRPO_LR = 4, 4, 32, "dapo", 0.2, 1e-6
GRPO_REWARD = "_vs_trl_reward:distinct_words"  # module:function, importable from benchmarks/
# LoRA rows (`rm_lora`, `dpo_lora`), the same adapters on both sides: every linear projection of a
# Llama-style block (as benchmarks/real_model.py trains), no adapter dropout (dropout is off everywhere).
LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32.0, 0.0
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _rows(assets: Path) -> list[dict]:
    return [json.loads(line) for line in (assets / "pairs.jsonl").read_text().splitlines()]


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def _rate(stamps: list[float], warmup: int, units_per_step: float) -> tuple[float, float]:
    """(units per second, seconds) over the steps after warm-up."""
    if len(stamps) <= warmup:
        raise RuntimeError(f"only {len(stamps)} steps were timed; need more than {warmup}")
    dt = stamps[-1] - stamps[warmup - 1] if warmup else stamps[-1] - stamps[0]
    n = len(stamps) - warmup if warmup else len(stamps) - 1
    return n * units_per_step / dt, dt


# ---------------------------------------------------------------- ours


def _ours_fit(model, tok, n: int, loss_fn, a: argparse.Namespace, lr: float, batch: int | None = None
              ) -> list[float]:
    from rlhfkit.logging import MetricsLogger
    from rlhfkit.runtime import RunDir
    from rlhfkit.train.supervised import OptimConfig, fit

    stamps: list[float] = []
    cfg = OptimConfig(lr=lr, batch_size=batch or a.batch_pairs, max_steps=a.warmup + a.steps, checkpoint_every=0,
                      log_every=10_000, mixed_precision="bf16" if a.precision == "bf16" else "fp32", warmup_frac=0.0)
    with tempfile.TemporaryDirectory() as d, MetricsLogger(None, []) as logger:
        fit(RunDir(Path(d)), model, tok, n, loss_fn, cfg, 0, logger, "bench", device=a.device,
            on_step=lambda step: stamps.append(time.perf_counter()) or {})
    return stamps


def _ours_lora(model: Any, lora: bool, task: str) -> Any:
    """Our config's `lora.enabled=true` with the benchmark's adapters (what `with_adapters` applies)."""
    if not lora:
        return model
    from rlhfkit.lm.models import LoRAConfig, with_lora

    cfg = LoRAConfig(enabled=True, r=LORA_R, alpha=LORA_ALPHA, dropout=LORA_DROPOUT, target_modules=LORA_TARGETS)
    return with_lora(model, cfg, task=task)


def _ours_tokens(enc: list[Any]) -> dict:
    """Mean tokens of what our trainer runs: prompt, chosen and rejected answers (EOS included)."""
    return {"prompt": _mean(e.chosen[1] for e in enc),
            "chosen": _mean(len(e.chosen[0]) - e.chosen[1] for e in enc),
            "rejected": _mean(len(e.rejected[0]) - e.rejected[1] for e in enc),
            "chosen_seq": _mean(len(e.chosen[0]) for e in enc),
            "rejected_seq": _mean(len(e.rejected[0]) for e in enc)}


def ours_rm(assets: Path, a: argparse.Namespace, lora: bool = False) -> dict:
    from rlhfkit.algos.reward_model import bt_loss_fn
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import reward_model_from

    pairs = [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in _rows(assets)]
    model, tok = reward_model_from(a.policy)
    model = _ours_lora(model, lora, "SEQ_CLS")
    tokens = _ours_tokens(encode_preferences(tok, pairs, a.max_len)) if a.count_tokens else {}
    stamps = _ours_fit(model, tok, len(pairs), bt_loss_fn(model, tok, pairs, a.max_len), a, 1e-5)
    rate, dt = _rate(stamps, a.warmup, a.batch_pairs)
    return {"pairs_per_s": rate, "timed_s": dt, "tokens": tokens}


def ours_dpo(assets: Path, a: argparse.Namespace, lora: bool = False, loss: str = "sigmoid") -> dict:
    """DPO's reference log-probs are computed once before training; their time is charged to
    the timed steps in proportion (the timed pairs' share of all pairs). With LoRA the reference
    is the policy before training (fresh adapters add nothing), as in `rlhfkit dpo`. `loss`: a
    `PAIR_LOSSES` name (`ipo` for the ipo task), with beta (IPO's tau) 0.1."""
    from rlhfkit.algos.dpo import dpo_loss_fn, pair_logprobs
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.lm.data import encode_preferences
    from rlhfkit.lm.models import load_policy
    from rlhfkit.ops.preference import PairLossConfig

    pairs = [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in _rows(assets)]
    model, tok = load_policy(a.policy)
    model = _ours_lora(model, lora, "CAUSAL_LM").to(a.device)
    t0 = time.perf_counter()
    enc = encode_preferences(tok, pairs, a.max_len)
    ref_c, ref_r = pair_logprobs(model, tok, enc, a.max_len, batch_size=a.batch_pairs)
    ref_s = time.perf_counter() - t0
    model.train()
    loss_fn = dpo_loss_fn(model, tok, pairs, ref_c, ref_r, PAIR_BETA, a.max_len, encoded=enc, loss=loss,
                          hp=PairLossConfig(beta=PAIR_BETA))
    stamps = _ours_fit(model, tok, len(pairs), loss_fn, a, 1e-6)
    timed_pairs = a.steps * a.batch_pairs
    _, dt = _rate(stamps, a.warmup, a.batch_pairs)
    dt += ref_s * timed_pairs / len(pairs)
    return {"pairs_per_s": timed_pairs / dt, "timed_s": dt, "reference_s": ref_s,
            "tokens": _ours_tokens(enc) if a.count_tokens else {}}


def _feedback_rows(assets: Path, per_step: int) -> list[dict]:
    """The pairs unpaired for KTO, both sides: each pair gives its chosen answer as a desirable
    example and its rejected one as undesirable. Each run of `per_step` examples is the chosen
    answers of `per_step / 2` pairs, then the same pairs' rejected ones, so TRL's sequential batches
    are balanced and its KL completions (rotated by one within the batch) answer another prompt."""
    rows, half = _rows(assets), per_step // 2
    out = []
    for k in range(0, len(rows), half):
        chunk = rows[k: k + half]
        out += [{"prompt": r["prompt"], "completion": r["chosen"], "label": True} for r in chunk]
        out += [{"prompt": r["prompt"], "completion": r["rejected"], "label": False} for r in chunk]
    return out


def ours_kto(assets: Path, a: argparse.Namespace) -> dict:
    """Our KTO (`algos/kto.py`) driven as `rlhfkit kto` drives it: each example's KL partner drawn
    once (`kl_partners`), reference log-probs of the matched and the mismatched sequences computed
    once before training (their time charged to the timed steps in proportion, as for DPO), then
    `fit` on `kto_loss_fn`: per step a no-grad policy forward over the batch's mismatched
    sequences and a forward and backward over its matched ones. lambda_d = lambda_u = 1."""
    from rlhfkit.algos.kto import (
        encode_feedback,
        feedback_logps,
        kl_partners,
        kto_loss_fn,
    )
    from rlhfkit.feedback.records import Feedback
    from rlhfkit.lm.models import load_policy
    from rlhfkit.train.dist import Dist

    batch = 2 * a.batch_pairs
    feedback = [Feedback(r["prompt"], r["completion"], r["label"]) for r in _feedback_rows(assets, batch)]
    model, tok = load_policy(a.policy)
    model = model.to(a.device)
    t0 = time.perf_counter()
    enc = encode_feedback(tok, feedback, kl_partners([f.prompt for f in feedback], 0), a.max_len)
    ref, kl_ref = feedback_logps(model, enc, tok.pad_token_id, batch_size=batch)
    ref_s = time.perf_counter() - t0
    model.train()
    loss_fn = kto_loss_fn(model, tok, enc, ref, kl_ref, PAIR_BETA, 1.0, 1.0, Dist())
    stamps = _ours_fit(model, tok, len(enc), loss_fn, a, 1e-6, batch=batch)
    timed = a.steps * batch
    _, dt = _rate(stamps, a.warmup, batch)
    dt += ref_s * timed / len(enc)
    return {"examples_per_s": timed / dt, "pairs_per_s": timed / dt / 2, "timed_s": dt, "reference_s": ref_s}


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


def _stamp_logger(lengths: list[float] | None = None) -> list[float]:
    """Timestamps of our online driver's metrics lines: one per iteration, after its update
    (and, into `lengths`, each iteration's mean response length, EOS included)."""
    from rlhfkit import logging as rlog

    stamps: list[float] = []
    original = rlog.MetricsLogger.log

    def stamped(self, metrics, step):  # noqa: ANN001, ANN202
        stamps.append(time.perf_counter())
        if lengths is not None and "rollout/length" in metrics:
            lengths.append(float(metrics["rollout/length"]))
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

    lengths: list[float] = []
    stamps = _stamp_logger(lengths)
    n_iter = a.warmup + a.steps
    prompts = str(assets / "prompts.txt")
    with tempfile.TemporaryDirectory() as d:
        rc = RolloutConfig(task=prompts, prompts=prompts, batch_prompts=a.grpo_prompts,
                           max_new_tokens=a.grpo_new_tokens, temperature=1.0)
        cfg = GRPOConfig(policy=str(a.policy), rewards=[f"fn:{GRPO_REWARD}"], rollout=rc, group_size=a.grpo_g,
                         scale_rewards="group", loss_type=GRPO_LOSS, epsilon_low=GRPO_EPS, epsilon_high=GRPO_EPS,
                         epochs=1, minibatch=0, beta=a.grpo_beta, kl_mode="loss", kl_estimator="k3_is",
                         mask_truncated=False, iterations=n_iter, lr=GRPO_LR, grad_clip=1.0, checkpoint_every=0,
                         out=d, device=a.device, mixed_precision="bf16" if a.precision == "bf16" else "fp32",
                         gradient_checkpointing=a.gradient_checkpointing)
        run(cfg)
    per_iter = a.grpo_prompts * a.grpo_g
    rate, dt = _rate(stamps[:n_iter], a.warmup, per_iter)
    tokens = {}
    if a.count_tokens:  # the prompts as our sampler encodes them (chat template and all), and answer lengths
        from rlhfkit.lm.models import load_tokenizer
        from rlhfkit.lm.sampling import encode_prompts

        lines = (assets / "prompts.txt").read_text().splitlines()[: n_iter * a.grpo_prompts]
        tokens = {"prompt": _mean(len(x) for x in encode_prompts(load_tokenizer(a.policy), lines, 10_000)),
                  "completion": _mean(lengths)}
    return {"completions_per_s": rate, "prompts_per_s": rate / a.grpo_g, "timed_s": dt, "beta": a.grpo_beta,
            "tokens": tokens}


# ---------------------------------------------------------------- TRL


def _trl_common(a: argparse.Namespace, out: str) -> dict:
    return {"output_dir": out, "max_steps": a.warmup + a.steps, "logging_steps": 10_000, "save_strategy": "no",
            "report_to": "none", "use_cpu": a.device == "cpu", "bf16": a.precision == "bf16",
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


def _tok(a: argparse.Namespace):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(a.policy)


def _conversational(tok: Any) -> bool:
    """A chat model: TRL then gets messages, which it renders through the template as we do."""
    return bool(getattr(tok, "chat_template", None))


def _pair_dataset(assets: Path, tok: Any) -> Any:
    """The pairs as TRL reads them: plain text, or (chat model) conversational, the prompt one
    user turn and each answer one assistant turn."""
    from datasets import Dataset

    rows = _rows(assets)
    if _conversational(tok):
        rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "chosen": [{"role": "assistant", "content": r["chosen"]}],
                 "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    return Dataset.from_list(rows)


def _prompt_dataset(assets: Path, tok: Any) -> Any:
    from datasets import Dataset

    prompts = (assets / "prompts.txt").read_text().splitlines()
    if _conversational(tok):
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
    return Dataset.from_dict({"prompt": prompts})


def _trl_lora(lora: bool, task: str) -> Any:
    """TRL's `peft_config`: the adapters ours trains (`_ours_lora`)."""
    if not lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT, target_modules=LORA_TARGETS,
                      task_type=task)


def trl_rm(assets: Path, a: argparse.Namespace, lora: bool = False) -> dict:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    tok = _tok(a)
    model = AutoModelForSequenceClassification.from_pretrained(a.policy, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = RewardConfig(per_device_train_batch_size=a.batch_pairs, learning_rate=1e-5, max_length=a.max_len,
                            **_trl_common(a, d))
        trainer = RewardTrainer(model=model, args=args, train_dataset=_pair_dataset(assets, tok), processing_class=tok,
                                callbacks=[timer], peft_config=_trl_lora(lora, "SEQ_CLS"))
        ds = trainer.train_dataset  # what it trains on: whole sequences, prompt + answer (+ template tokens)
        tokens = {"chosen_seq": _mean(len(x) for x in ds["chosen_ids"]),
                  "rejected_seq": _mean(len(x) for x in ds["rejected_ids"])} if a.count_tokens else {}
        trainer.train()
    rate, dt = _rate(timer.stamps, a.warmup, a.batch_pairs)
    return {"pairs_per_s": rate, "timed_s": dt, "tokens": tokens}


def trl_dpo(assets: Path, a: argparse.Namespace, lora: bool = False, loss_type: str = "sigmoid") -> dict:
    """With LoRA, TRL's reference is the model with its adapters disabled (no second model).
    `loss_type` (TRL 1.16 takes a list: one loss, weight 1): `ipo` for the ipo task."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tok = _tok(a)
    model = AutoModelForCausalLM.from_pretrained(a.policy)
    ref = None if lora else AutoModelForCausalLM.from_pretrained(a.policy)
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = DPOConfig(per_device_train_batch_size=a.batch_pairs, learning_rate=1e-6, beta=PAIR_BETA,
                         loss_type=[loss_type], max_length=a.max_len, **_trl_common(a, d))
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=_pair_dataset(assets, tok),
                             processing_class=tok, callbacks=[timer], peft_config=_trl_lora(lora, "CAUSAL_LM"))
        ds = trainer.train_dataset
        tokens = {"prompt": _mean(len(x) for x in ds["prompt_ids"]), "chosen": _mean(len(x) for x in ds["chosen_ids"]),
                  "rejected": _mean(len(x) for x in ds["rejected_ids"]),
                  "chosen_seq": _mean(len(p) + len(c) for p, c in zip(ds["prompt_ids"], ds["chosen_ids"])),
                  "rejected_seq": _mean(len(p) + len(r) for p, r in zip(ds["prompt_ids"], ds["rejected_ids"]))
                  } if a.count_tokens else {}
        trainer.train()
    rate, dt = _rate(timer.stamps, a.warmup, a.batch_pairs)
    return {"pairs_per_s": rate, "timed_s": dt, "tokens": tokens}


def trl_kto(assets: Path, a: argparse.Namespace) -> dict:
    """TRL's KTOTrainer (`trl.KTOTrainer`, stable in 1.16) on the same unpaired examples in the same
    order (`_feedback_rows`; its sampler is sequential for KTO), `2 x batch_pairs` per step, with a
    reference model in memory as in the dpo row (its default, `precompute_ref_log_probs=False`): per
    step a no-grad policy forward over the batch's KL sequences (completions rotated by one within
    the batch), the policy's forward and backward over the matched sequences, and two no-grad
    reference forwards, KL and matched. desirable_weight = undesirable_weight = 1."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import KTOConfig, KTOTrainer

    tok = _tok(a)
    batch = 2 * a.batch_pairs
    model = AutoModelForCausalLM.from_pretrained(a.policy)
    ref = AutoModelForCausalLM.from_pretrained(a.policy)
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = KTOConfig(per_device_train_batch_size=batch, learning_rate=1e-6, beta=PAIR_BETA, loss_type="kto",
                         desirable_weight=1.0, undesirable_weight=1.0, max_length=a.max_len, **_trl_common(a, d))
        data = Dataset.from_list(_feedback_rows(assets, batch))
        KTOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok,
                   callbacks=[timer]).train()
    rate, dt = _rate(timer.stamps, a.warmup, batch)
    return {"examples_per_s": rate, "pairs_per_s": rate / 2, "timed_s": dt}


def trl_online(assets: Path, a: argparse.Namespace, kind: str) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    if kind == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    tok = _tok(a)
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
    """TRL's GRPOTrainer with our GRPO's settings: per step, `grpo_prompts` prompts x `grpo_g`
    generations (`per_device_train_batch_size` counts completions; one generation per optimizer
    step), generated by `model.generate` (no vLLM), scored by the shared reward function."""
    from trl import GRPOConfig, GRPOTrainer

    module, _, attr = GRPO_REWARD.partition(":")
    reward = getattr(importlib.import_module(module), attr)  # benchmarks/ is on sys.path: this script's folder
    tok = _tok(a)
    timer = _timer()
    with tempfile.TemporaryDirectory() as d:
        args = GRPOConfig(per_device_train_batch_size=a.grpo_prompts * a.grpo_g, num_generations=a.grpo_g,
                          max_completion_length=a.grpo_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                          loss_type=GRPO_LOSS, scale_rewards="group", epsilon=GRPO_EPS, epsilon_high=GRPO_EPS,
                          num_iterations=1, beta=a.grpo_beta, use_bias_correction_kl=True,
                          mask_truncated_completions=False, learning_rate=GRPO_LR, max_grad_norm=1.0,
                          use_vllm=False, log_completions=False, **_trl_common(a, d))
        trainer = GRPOTrainer(model=str(a.policy), reward_funcs=[reward], args=args,
                              train_dataset=_prompt_dataset(assets, tok), processing_class=tok, callbacks=[timer])
        prompt_lens = _spy_prompt_lengths(trainer) if a.count_tokens else []
        trainer.train()
        # with logging_steps past max_steps, the one log line (train end) averages every step's metrics
        log = next((h for h in reversed(trainer.state.log_history) if "completions/mean_length" in h), {})
    rate, dt = _rate(timer.stamps, a.warmup, a.grpo_prompts * a.grpo_g)
    tokens = {"prompt": _mean(prompt_lens), "completion": log.get("completions/mean_length", float("nan"))
              } if a.count_tokens else {}
    return {"completions_per_s": rate, "prompts_per_s": rate / a.grpo_g, "timed_s": dt, "beta": a.grpo_beta,
            "tokens": tokens}


def _spy_prompt_lengths(trainer: Any) -> list[int]:
    """The prompt lengths GRPOTrainer generates from, as it tokenizes them (its `_tokenize_prompts`,
    TRL 1.16; nothing is recorded where that method is gone)."""
    lengths: list[int] = []
    original = getattr(trainer, "_tokenize_prompts", None)
    if original is None:
        return lengths

    def spy(prompts: list) -> Any:
        out = original(prompts)
        lengths.extend(len(ids) for ids in out[0])
        return out

    trainer._tokenize_prompts = spy
    return lengths


WORKERS = {
    ("ours", "rm"): ours_rm, ("ours", "dpo"): ours_dpo,
    ("ours", "rm_lora"): lambda p, a: ours_rm(p, a, lora=True),
    ("ours", "dpo_lora"): lambda p, a: ours_dpo(p, a, lora=True),
    ("trl", "rm_lora"): lambda p, a: trl_rm(p, a, lora=True),
    ("trl", "dpo_lora"): lambda p, a: trl_dpo(p, a, lora=True),
    ("ours", "ppo"): lambda p, a: _ours_online(p, a, "ppo"),
    ("ours", "reinforce"): lambda p, a: _ours_online(p, a, "reinforce"),
    ("ours", "grpo_like"): ours_grpo, ("trl", "grpo_like"): trl_grpo,
    ("trl", "rm"): trl_rm, ("trl", "dpo"): trl_dpo,
    ("ours", "ipo"): lambda p, a: ours_dpo(p, a, loss="ipo"),
    ("trl", "ipo"): lambda p, a: trl_dpo(p, a, loss_type="ipo"),
    ("ours", "kto"): ours_kto, ("trl", "kto"): trl_kto,
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
    ap.add_argument("--policy", type=Path, default=None, help="the model folder (default: ASSETS/policy)")
    ap.add_argument("--batch-pairs", type=int, default=BATCH_PAIRS,
                    help="rm, dpo, ipo: pairs per optimizer step (kto: twice as many examples)")
    ap.add_argument("--max-len", type=int, default=MAX_LEN, help="rm, dpo, ipo, kto: tokens per sequence at most")
    ap.add_argument("--grpo-prompts", type=int, default=GRPO_PROMPTS)
    ap.add_argument("--grpo-g", type=int, default=GRPO_G, help="grpo_like: completions per prompt")
    ap.add_argument("--grpo-new-tokens", type=int, default=GRPO_NEW_TOKENS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--count-tokens", action="store_true", help="report the token counts each side trains on")
    a = ap.parse_args()
    a.policy = a.policy or a.assets / "policy"
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
    if a.device == "cuda":
        res.update({"device": "cuda", "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2 ** 20})
    sys.stdout.write("RESULT_JSON " + json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
