"""Set-up and bookkeeping shared by the online methods (PPO, REINFORCE): configs for
rollouts and the KL penalty, loading policy / reference / reward model, the
batch-accounting table, failure-sign warnings, and checkpoint resume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from safetensors.torch import load_file

from rlhfkit.algos.rollout import PromptStream, RewardModel, frozen_copy
from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.lm.models import load_policy
from rlhfkit.lm.sampling import load_prompts
from rlhfkit.logging import get_logger
from rlhfkit.ops.kl import AdaptiveKLController, FixedKLController
from rlhfkit.runtime import RunDir, load_trainer_state, save_checkpoint
from rlhfkit.tasks.gold import GoldScorer
from rlhfkit.tasks.reviews import item_of

log = get_logger(__name__)


@dataclass
class RolloutConfig:
    prompts: str | None = F(None, "training prompts file (.txt/.jsonl); None: the embedded task's RL prompts")
    n_prompts: int = F(2000, "embedded-task prompts to draw when no file is given")
    task_seed: int = F(0, "seed of the embedded task's generator")
    batch_prompts: int = F(64, "prompts per rollout batch")
    max_new_tokens: int = F(48, "max response tokens")
    temperature: float = F(1.0, "sampling temperature during training")
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
    ref: Any
    reward: RewardModel
    prompts: PromptStream
    gold: GoldScorer | None


def setup(policy_path: str | None, rm_path: str | None, rcfg: RolloutConfig, seed: int, what: str) -> Setup:
    if policy_path is None or rm_path is None:
        raise UserError(f"{what}: give --policy PATH (e.g. the SFT model) and --reward-model PATH")
    policy, tok = load_policy(policy_path)
    reward = RewardModel(rm_path, rcfg.rm_max_len)
    if len(reward.tokenizer) != len(tok):
        log.warning("%s: policy and reward model tokenizers differ; responses are re-tokenized as text", what)
    prompts = load_prompts(rcfg.prompts, rcfg.n_prompts, rcfg.task_seed, "rl")
    gold = GoldScorer() if all(item_of(p) is not None for p in prompts[:50]) else None
    return Setup(policy, tok, frozen_copy(policy), reward, PromptStream(prompts, seed), gold)


def batch_accounting(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    lines = ["batch accounting:"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


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
    ds = scores[0:n:2] - scores[1:n:2]
    decided = dg != 0
    agree = ((dg > 0) == (ds > 0))[decided].float().mean().item() if decided.any() else float("nan")
    return {"rollout/gold": g.mean().item(), "rollout/rm_gold_agreement": agree}


def checkpoint(run: RunDir, it: int, s: Setup, heads: dict[str, Any], opt: Any, kl_ctl: Any, norm: Any) -> None:
    """Policy (and heads), optimizer, beta, reward-normalizer statistics and prompt position."""
    save_checkpoint(run, it, {"policy": s.policy, **heads}, {
        "optimizer": opt.state_dict(), "kl": kl_ctl.state_dict(), "reward_norm": norm.state_dict(),
        "prompt_cursor": s.prompts.cursor})


def resume(run: RunDir, s: Setup, heads: dict[str, Any], opt: Any, kl_ctl: Any, norm: Any) -> int:
    """Restore everything `checkpoint` saved; returns the iteration to continue from (0: none)."""
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        return 0
    s.policy.load_state_dict(load_file(str(Path(ckpt) / "policy" / "model.safetensors")), strict=False)
    for name, head in heads.items():
        head.load(Path(ckpt) / name)
    state = load_trainer_state(ckpt)
    opt.load_state_dict(state["optimizer"])
    kl_ctl.load_state_dict(state["kl"])
    norm.load_state_dict(state["reward_norm"])
    s.prompts.cursor = state["prompt_cursor"]
    log.info("resuming from %s (iteration %d)", ckpt, state["step"])
    return int(state["step"])
