"""Set-up and bookkeeping shared by the online methods (PPO, REINFORCE, GRPO): configs for
rollouts and the KL penalty, loading policy / reference / reward model onto the
accelerator's device, the batch-accounting table, failure-sign warnings, checkpoint resume
and the driver loop. The collectives an `accelerate launch` job needs are `train/dist.py`'s.

Distributed runs: the rollout batch is global; process r samples prompts r, r + W, ...
of it, so every process sees different prompts. Batch statistics (reward normalization,
advantage whitening, the KL controller's input, logged metrics) are the global batch's.
With one process every collective is skipped, so a plain run computes what it always did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator, DistributedType

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.lm.forward import ResponseStats, frozen_copy, response_forward
from rlhfkit.lm.models import (
    LoRAConfig,
    enable_activation_checkpointing,
    load_policy,
    merged,
    refuse_prefix_tuned,
    save_model,
    with_lora,
)
from rlhfkit.logging import (
    MetricsLogger,
    batch_accounting,
    get_logger,
    progress,
    read_metrics,
)
from rlhfkit.ops.kl import AdaptiveKLController, FixedKLController
from rlhfkit.runtime import (
    RunDir,
    load_model_weights,
    load_trainer_state,
    save_checkpoint,
)
from rlhfkit.tasks.base import Gold, gold_of, load_task, task_prompts
from rlhfkit.train.dist import Dist
from rlhfkit.train.rewards import RewardPart, Rewards
from rlhfkit.train.rollouts import PromptStream
from rlhfkit.types import Rollout

log = get_logger(__name__)


@dataclass
class RolloutConfig:
    task: str = F("reviews", "the task: reviews (embedded), module:attribute, or a prompts file (no gold)")
    prompts: str | None = F(None, "training prompts file (.txt/.jsonl) instead of the task's RL prompts")
    n_prompts: int = F(2000, "task prompts to draw when no file is given")
    task_seed: int = F(0, "seed of the embedded task's generator")
    batch_prompts: int = F(64, "prompts per rollout batch")
    max_new_tokens: int = F(48, "max response tokens")
    temperature: float = F(1.0, "sampling temperature during training")
    backend: str = F("hf", "what samples rollouts: hf (generate) or vllm (needs the `vllm` extra; one process)")
    rm_max_len: int = F(96, "max tokens the reward model reads")


@dataclass
class KLConfig:
    beta: float = F(0.05, "initial weight of the per-token KL penalty")
    adaptive: bool = F(False, "steer beta towards target with Ziegler et al.'s proportional controller")
    target: float = F(4.0, "adaptive: target KL(pi || pi_ref) per response, in nats")
    horizon: int = F(4000, "adaptive: controller horizon in samples")
    estimator: Literal["k1", "k2", "k3"] = F("k1", "per-token KL estimator in the reward")


def kl_controller(cfg: KLConfig) -> FixedKLController | AdaptiveKLController:
    if cfg.adaptive:
        return AdaptiveKLController(cfg.beta, cfg.target, cfg.horizon)
    return FixedKLController(cfg.beta)


@dataclass
class Setup:
    policy: Any
    tokenizer: Any
    ref: Any  # a frozen copy of the initial policy; None with LoRA (the adapter is switched off instead)
    reward: Rewards | None  # or any (prompts, responses) -> (N,) callable; None: the method needs no reward
    prompts: PromptStream
    gold: Gold | None
    dist: Dist = field(default_factory=Dist)
    train_module: Any = None  # what the update's forward goes through: the accelerate-prepared module

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def next_prompts(self, n: int) -> list[str]:
        """This process's share of the next global batch of `n` prompts (all advance one cursor)."""
        if n < self.dist.world:
            raise UserError(f"rollout.batch_prompts={n} is the global batch: it must be at least the "
                            f"number of processes ({self.dist.world})")
        return self.dist.shard(self.prompts.next(n))

    def autocast(self) -> AbstractContextManager[None]:
        """The accelerator's mixed precision for the no-grad passes (sampling, old and reference
        log-probs, scores), so they run at the precision the prepared training forward runs at."""
        return self.dist.acc.autocast() if self.dist.acc is not None else nullcontext()

    def reference(self, rollout: Rollout) -> ResponseStats:
        """Log-probs under the reference policy: the frozen copy, or (LoRA) the policy with its
        adapter disabled, i.e. the base weights; one copy of the weights either way."""
        if self.ref is not None:
            return response_forward(self.ref, rollout)
        with self.policy.disable_adapter():
            return response_forward(self.policy, rollout)


def setup(policy_path: str | None, rewards: Sequence[RewardPart] | None, rcfg: RolloutConfig, seed: int, what: str,
          lora: LoRAConfig | None = None, acc: Accelerator | None = None, ref: bool = True) -> Setup:
    """Policy (with LoRA adapters if asked), reference (unless `ref` is False: a run without a KL
    term loads none), rewards (None: a method that judges without one, e.g. online DPO's simulated
    labelers; an empty list is refused), the task's prompts and gold, on `acc`'s device."""
    if policy_path is None:
        raise UserError(f"{what}: give --policy PATH (e.g. the SFT model)")
    if rewards is not None and not rewards:
        raise UserError(f"{what}: give --reward-model PATH, or --reward rm:PATH / fn:module:function")
    policy, tok = load_policy(policy_path)
    refuse_prefix_tuned(policy, policy_path, what)
    reward = Rewards(rewards, rcfg.rm_max_len) if rewards is not None else None
    if reward is not None and any(len(rm.tokenizer) != len(tok) for rm in reward.reward_models):
        log.warning("%s: policy and reward model tokenizers differ; responses are re-tokenized as text", what)
    task = load_task(rcfg.task, rcfg.task_seed)
    prompts = task_prompts(task, rcfg.n_prompts, "rl", rcfg.prompts)
    if lora is not None and lora.enabled:
        policy, reference = with_lora(policy, lora), None
    else:
        reference = frozen_copy(policy) if ref else None
    if acc is not None and acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise UserError(f"{what}: runs on one device or with DDP (configs/accelerate/cpu_2proc.yaml, "
                        f"multi_gpu_ddp.yaml); {acc.distributed_type.value} is not supported for the online "
                        "trainers yet (sampling needs the whole policy on every process)")
    if acc is not None:
        policy.to(acc.device)
        if reward is not None:
            reward.to(acc.device)
        reference = reference.to(acc.device) if reference is not None else None
    return Setup(policy, tok, reference, reward, PromptStream(prompts, seed), gold_of(task), Dist(acc))


def per_process(n: int, world: int) -> str:
    """How many of `n` items each of `world` processes holds: "4", or "3-4" when they differ."""
    lo, hi = n // world, -(-n // world)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def no_dropout(policy: Any, gradient_checkpointing: bool) -> None:
    """Dropout off: the old and new log-probs must come from one function. Without gradient
    checkpointing that is eval mode. transformers recomputes activations only in train mode, so
    with it the policy trains with every dropout probability set to 0 instead."""
    if not gradient_checkpointing:
        policy.eval()
        return
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise UserError(f"gradient_checkpointing is on, but {type(base).__name__} does not support it")
    enable_activation_checkpointing(base)
    for module in policy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # Llama-style attention
            module.attention_dropout = 0.0
    policy.train()


class FailureSigns:
    """Plain-words warnings on the known ways RLHF runs go wrong (each said at most 3 times)."""

    def __init__(self, max_new_tokens: int) -> None:
        self.max_new_tokens = max_new_tokens
        self.counts: dict[str, int] = {}
        self.history: list[tuple[float, float]] = []  # (proxy score, rm agreement with gold)

    def _warn(self, key: str, message: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] <= 3:
            log.warning(message)

    def check(self, it: int, m: dict[str, float]) -> None:
        if m.get("rollout/kl", 0.0) < -0.5:
            self._warn("negkl", f"iteration {it}: the KL estimate is negative ({m['rollout/kl']:.2f}); the "
                                "policy's log-probs disagree with sampling (temperature, top-k or padding/positions?)")
        if m.get("ppo/ratio_max", 1.0) > 10.0:
            self._warn("ratio", f"iteration {it}: the policy/old-policy ratio reached {m['ppo/ratio_max']:.1f}; "
                                "updates are too large: lower the learning rate or the PPO epochs")
        length = m.get("rollout/length", 1.0)
        if length >= 0.95 * self.max_new_tokens:
            self._warn("long", f"iteration {it}: responses run to the length limit ({length:.1f} of "
                               f"{self.max_new_tokens} tokens): the policy may be exploiting the reward model")
        if length <= 1.0:
            self._warn("short", f"iteration {it}: responses have collapsed to {length:.1f} tokens")
        if "rollout/rm_gold_agreement" in m:
            self.history.append((m["rollout/score"], m["rollout/rm_gold_agreement"]))
            if len(self.history) >= 10:
                first, last = self.history[:5], self.history[-5:]
                d_score = sum(s for s, _ in last) / 5 - sum(s for s, _ in first) / 5
                d_acc = sum(a for _, a in last) / 5 - sum(a for _, a in first) / 5
                if d_score > 0 and d_acc < -0.1:
                    self._warn("overopt", f"iteration {it}: the reward-model score is rising while its agreement "
                                          f"with held-out (gold) judgments fell by {-d_acc:.2f}: over-optimization")


def gold_metrics(s: Setup, scores: torch.Tensor, prompts: Sequence[str], responses: Sequence[str]
                 ) -> dict[str, float]:
    """Mean gold score of a batch, and how often the reward model orders pairs of it as gold does
    (nothing when the prompts have no gold scorer)."""
    if s.gold is None:
        return {}
    g = torch.tensor(s.gold.batch(list(prompts), list(responses)))
    n = len(g) // 2 * 2
    dg = g[0:n:2] - g[1:n:2]
    scores = scores.detach().cpu()
    ds = scores[0:n:2] - scores[1:n:2]
    decided = dg != 0
    agree = ((dg > 0) == (ds > 0))[decided].float().mean().item() if decided.any() else float("nan")
    return {"rollout/gold": g.mean().item(), "rollout/rm_gold_agreement": agree}


def score_rollout(s: Setup, rollout: Rollout) -> tuple[torch.Tensor, dict[str, float]]:
    """The rollout's total reward (N,) on its device, and each part's batch mean when there are
    several (`rollout/reward_part/<name>`)."""
    prompts, responses = list(rollout.prompts), list(rollout.responses)
    scored = getattr(s.reward, "scored", None)  # any (prompts, responses) -> (N,) callable may stand in
    total, parts = scored(prompts, responses) if scored is not None else (s.reward(prompts, responses), {})
    logged = {f"rollout/reward_part/{k}": v.mean().item() for k, v in parts.items()} if len(parts) > 1 else {}
    return total.float().to(rollout.ids.device), logged


def checkpoint(run: RunDir, it: int, s: Setup, heads: dict[str, Any], opt: Any, kl_ctl: Any, norm: Any) -> None:
    """Policy (the adapter alone with LoRA) and heads, optimizer, beta, reward-normalizer statistics
    and prompt position; `save_checkpoint` adds every RNG state (python, numpy, torch, CUDA), which
    includes the generator `generate` samples with; in a distributed run, each process's RNG
    states. Written by the main process only."""
    rng_by_rank = s.dist.rng_states()
    if not s.dist.is_main:
        return
    save_checkpoint(run, it, {"policy": s.policy, **heads}, {
        "optimizer": opt.state_dict(), "kl": kl_ctl.state_dict(), "reward_norm": norm.state_dict(),
        "prompt_cursor": s.prompts.cursor, "rng_by_rank": rng_by_rank})


def resume(run: RunDir, s: Setup, heads: dict[str, Any], opt: Any, kl_ctl: Any, norm: Any) -> int:
    """Restore everything `checkpoint` saved; returns the iteration to continue from (0: none).
    Each process takes back its own RNG states; resumed with a different number of processes,
    each process's sampling stream is seeded afresh instead."""
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        return 0
    load_model_weights(s.policy, Path(ckpt) / "policy")
    for name, head in heads.items():
        head.load(Path(ckpt) / name)
    state = load_trainer_state(ckpt)
    opt.load_state_dict(state["optimizer"])
    kl_ctl.load_state_dict(state["kl"])
    norm.load_state_dict(state["reward_norm"])
    s.prompts.cursor = state["prompt_cursor"]
    s.dist.restore_rng(state.get("rng_by_rank"), int(state["step"]))
    log.info("resuming from %s (iteration %d)", ckpt, state["step"])
    return int(state["step"])


def drive(cfg: Any, s: Setup, acc: Accelerator, run_dir: RunDir, name: str, module: torch.nn.Module, opt: Any,
          kl_ctl: Any, norm: Any, step: Callable[[int, Any], dict[str, float]], accounting: list[tuple[str, Any]],
          heads: dict[str, Any] | None = None) -> dict:
    """The loop every online method shares (PPO, REINFORCE/RLOO, GRPO): resume, hand `module`
    (what the update's forward goes through) and `opt` to the accelerator, run `step(it, opt)`
    for each remaining iteration with progress, failure-sign warnings, metrics and checkpoints,
    then write final/ (LoRA merged), the heads and summary.json. `cfg` has the online configs'
    common fields: seed, resume, log, iterations, checkpoint_every, rollout."""
    t0, heads = time.time(), heads or {}
    s.dist.reseed(cfg.seed)
    start = resume(run_dir, s, heads, opt, kl_ctl, norm) if cfg.resume else 0
    s.train_module, opt = acc.prepare(module, opt)
    log.info(batch_accounting(accounting))
    signs, history = FailureSigns(cfg.rollout.max_new_tokens), earlier_history(run_dir, start)
    with MetricsLogger(run_dir.path if s.dist.is_main else None, cfg.log, resume=cfg.resume) as logger:
        for it in progress(range(start, cfg.iterations), total=cfg.iterations, desc=name):
            m = step(it, opt)
            if s.dist.is_main:
                signs.check(it, m)
            logger.log(m, it + 1)
            history.append(m)
            if cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations:
                checkpoint(run_dir, it + 1, s, heads, opt, kl_ctl, norm)
    acc.wait_for_everyone()
    summary = summarize(history, name, run_dir, t0, kl_ctl.value)
    if s.dist.is_main:
        save_model(merged(s.policy), s.tokenizer, run_dir.final)
        for head_name, head in heads.items():
            head.save_pretrained(run_dir.path / head_name)
        run_dir.write_summary(summary)
    return summary


def earlier_history(run_dir: RunDir, start: int) -> list[dict[str, float]]:
    """A resumed run's metrics of iterations 1..start (the last line logged for each), so its
    summary covers the whole run."""
    path = run_dir.path / "metrics.jsonl"
    if start == 0 or not path.exists():
        return []
    rows = {int(r["step"]): r for r in read_metrics(path) if int(r.get("step", 0)) <= start}
    return [rows[k] for k in sorted(rows)]


def summarize(history: list[dict[str, float]], name: str, run_dir: RunDir, t0: float, beta: float) -> dict:
    last = history[-5:] if history else []

    def avg(k: str) -> float | None:
        vals = [h[k] for h in last if k in h]
        return sum(vals) / len(vals) if vals else None

    summary = {"final": str(run_dir.final), "iterations": len(history), "final_beta": beta,
               "score": avg("rollout/score"), "kl": avg("rollout/kl"), "gold": avg("rollout/gold"),
               "length": avg("rollout/length"), "wall_s": time.time() - t0}
    log.info("%s: last-5 mean score %s, KL %s, gold %s", name, summary["score"], summary["kl"], summary["gold"])
    return summary
