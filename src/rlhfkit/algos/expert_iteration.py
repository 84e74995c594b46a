"""Expert iteration (Anthony et al. 2017; "rejection-sampling fine-tuning" in the
RLHF comparisons of Dubois et al. 2023): each round, sample n responses per prompt,
keep the one the reward model likes best, and fine-tune on those with the SFT loss.

Under `accelerate launch` the round's prompts are a global batch: process r samples
prompts r, r + W, ... of it (`Setup.next_prompts`, as PPO and REINFORCE do), the chosen
demonstrations are gathered back into the global order, and every process fine-tunes on
that same set (`fit` shards each minibatch by rank). One Accelerator serves all rounds.
Only the main process writes files.

Resume: after each round a checkpoint holds the policy (Hugging Face-native), every
process's RNG states, the prompt position and the finished rounds' rows; `--resume`
continues with the next round. A run killed mid-round redoes that round from its start
state (or, with `optim.checkpoint_every`, continues its fine-tuning from the last
in-round checkpoint after sampling the same demonstrations again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.data import sft_batch, token_logprobs
from rlhfkit.lm.models import load_policy, save_model
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.ops.logprobs import masked_mean
from rlhfkit.ops.losses import LossOutput, sft_nll
from rlhfkit.runtime import (
    RunDir,
    load_model_weights,
    load_trainer_state,
    save_checkpoint,
    seed_everything,
)
from rlhfkit.tasks.base import load_task, task_prompts
from rlhfkit.train import sharded
from rlhfkit.train.dist import Dist, accelerator_for
from rlhfkit.train.online import Setup
from rlhfkit.train.rewards import Rewards, reward_specs
from rlhfkit.train.rollouts import PromptStream, best_of_n_gathered
from rlhfkit.train.supervised import OptimConfig, fit
from rlhfkit.types import batch_to

log = get_logger(__name__)


@dataclass
class ExpertIterationConfig(RunConfig):
    policy: str | None = F(None, "initial policy (the SFT model)")
    reward_model: str | None = F(None, "reward model that picks the best samples (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed")
    task: str = F("reviews", "the task: reviews (embedded), module:attribute, or a prompts file")
    rounds: int = F(3, "sample-select-finetune rounds")
    prompts_per_round: int = F(256, "prompts sampled each round (global: split between processes)")
    n: int = F(8, "samples per prompt")
    prompts: str | None = F(None, "training prompts file; None: the embedded task's RL prompts")
    n_prompts: int = F(2000, "embedded prompts to draw")
    task_seed: int = F(0, "seed of the embedded task's generator")
    max_new_tokens: int = F(48, "max response tokens")
    max_len: int = F(96, "max tokens of prompt + response in fine-tuning")
    optim: OptimConfig = F(OptimConfig(lr=1e-4, batch_size=32, epochs=2.0, checkpoint_every=0), "fine-tuning")


def run(cfg: ExpertIterationConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or not (cfg.reward_model or cfg.rewards):
        raise UserError("expert-iter: give --policy PATH and --reward-model PATH (or --reward rm:PATH / fn:module:function)")
    seed_everything(cfg.seed)
    acc = accelerator_for(cfg.device, cfg.optim.mixed_precision)
    _refuse_sharding(acc)
    s = _setup(cfg, acc)
    dist = s.dist
    path = cfg.out or "runs/expert-iter"
    run_dir = RunDir.create(path, cfg) if dist.is_main else RunDir(Path(path))
    dist.reseed(cfg.seed)
    start, rounds = _resume(run_dir, s) if cfg.resume else (0, [])
    with MetricsLogger(run_dir.path if dist.is_main else None, cfg.log, resume=cfg.resume) as logger:
        for r in range(start, cfg.rounds):
            rounds.append(_round(cfg, s, acc, run_dir, logger, r, resume=cfg.resume and r == start))
            if r + 1 < cfg.rounds:
                _checkpoint(run_dir, r + 1, s, rounds)
    acc.wait_for_everyone()
    summary = {"final": str(run_dir.final), "rounds": rounds, "processes": dist.world, "wall_s": time.time() - t0}
    if dist.is_main:
        save_model(s.policy, s.tokenizer, run_dir.final)
        run_dir.write_summary(summary)
    return summary


def _refuse_sharding(acc: Accelerator) -> None:
    """Sampling needs the whole policy on every process, and `fit` cannot yet shard the same model
    object a second time (FSDP2 refuses to wrap it again in round 2), so: one device or DDP."""
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED) or sharded.fsdp_requested():
        raise UserError("expert-iter: runs on one device or with DDP (configs/accelerate/cpu_2proc.yaml, "
                        "multi_gpu_ddp.yaml); FSDP and DeepSpeed are not supported for it yet (every round "
                        "samples with the whole policy and fine-tunes the same model again)")


def _setup(cfg: ExpertIterationConfig, acc: Accelerator) -> Setup:
    """Policy, reward model and prompt stream on the accelerator's device (no reference policy:
    expert iteration has no KL term)."""
    policy, tok = load_policy(cfg.policy)
    reward = Rewards(reward_specs(cfg.rewards, cfg.reward_model)).to(acc.device)
    policy.to(acc.device)
    prompts = task_prompts(load_task(cfg.task, cfg.task_seed), cfg.n_prompts, "rl", cfg.prompts)
    return Setup(policy, tok, None, reward, PromptStream(prompts, cfg.seed), None, Dist(acc))


def _round(cfg: ExpertIterationConfig, s: Setup, acc: Accelerator, run_dir: RunDir, logger: MetricsLogger,
           r: int, resume: bool) -> dict[str, Any]:
    """Sample this process's prompts, keep the best of n, gather, fine-tune on the global set."""
    mine = s.next_prompts(cfg.prompts_per_round)
    with torch.no_grad(), s.autocast():
        prompts, best, best_scores, all_scores = best_of_n_gathered(
            s.policy, s.tokenizer, s.reward, mine, cfg.n, s.dist, max_new_tokens=cfg.max_new_tokens)
    demos = [Demonstration(p, y) for p, y in zip(prompts, best) if y.strip()]  # the global batch's order
    row = {"round": r, "best_score": best_scores.mean().item(), "mean_score": all_scores.mean().item(),
           "demos": len(demos)}
    round_dir = RunDir(run_dir.path / f"round-{r}")
    if s.dist.is_main:
        write_records(round_dir.path / "demos.jsonl", demos)
        logger.log({f"expert_iter/{k}": v for k, v in row.items() if k != "round"}, r)
    log.info("expert-iter round %d: policy mean score %.3f, best-of-%d %.3f, %d demonstrations", r,
             row["mean_score"], cfg.n, row["best_score"], len(demos))
    if not demos:
        raise UserError(f"expert-iter round {r}: every chosen response is empty; raise max_new_tokens")
    policy, tok = s.policy, s.tokenizer

    def loss_fn(idx: list[int]) -> LossOutput:
        """The SFT loss, averaged over each demonstration's tokens, then over demonstrations: every
        chosen response weighs the same, and a step's gradient does not depend on how `fit` splits
        the batch between processes (a token mean per shard would weight shards by examples, not
        by tokens, and differ from the single-process step)."""
        b = batch_to(sft_batch(tok, [demos[i] for i in idx], cfg.max_len), policy.device)
        mask = b.loss_mask[:, 1:]  # (B, T-1)
        out = sft_nll(token_logprobs(policy, b.input_ids, b.attention_mask), mask, reduction="none")  # (B, T-1)
        return LossOutput(masked_mean(out.loss, mask, dim=1).mean(), out.metrics)  # (B,) -> ()

    fit(round_dir, policy, tok, len(demos), loss_fn, cfg.optim, cfg.seed + r, logger, f"expert-iter round {r}",
        resume=resume, accelerator=acc)
    acc.free_memory()  # drop this round's DDP wrapper and optimizer; the next round makes fresh ones
    return row


def _checkpoint(run_dir: RunDir, done: int, s: Setup, rounds: list[dict[str, Any]]) -> None:
    """`checkpoints/step-<done>/`: the policy, the prompt position, the finished rounds' rows and
    each process's RNG states (`save_checkpoint` adds the main process's). No optimizer: every
    round's fine-tuning starts a fresh one. Written by the main process only."""
    rng_by_rank = s.dist.rng_states()
    if s.dist.is_main:
        save_checkpoint(run_dir, done, {"policy": s.policy},
                        {"prompt_cursor": s.prompts.cursor, "rng_by_rank": rng_by_rank, "rounds": rounds})
    if s.dist.acc is not None:
        s.dist.acc.wait_for_everyone()


def _resume(run_dir: RunDir, s: Setup) -> tuple[int, list[dict[str, Any]]]:
    """Restore what `_checkpoint` saved: (rounds done, their rows); (0, []) without a checkpoint.
    Resumed with another number of processes, each sampling stream is seeded afresh."""
    ckpt = run_dir.latest_checkpoint()
    if ckpt is None:
        log.info("expert-iter: --resume, but %s holds no checkpoint; starting at round 0", run_dir.checkpoints)
        return 0, []
    load_model_weights(s.policy, ckpt / "policy")
    state = load_trainer_state(ckpt)
    s.prompts.cursor = state["prompt_cursor"]
    s.dist.restore_rng(state["rng_by_rank"], int(state["step"]))
    log.info("resuming from %s (round %d)", ckpt, state["step"])
    return int(state["step"]), list(state["rounds"])
