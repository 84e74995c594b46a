"""Online DPO (Guo et al. 2024, "Direct language model alignment from online AI feedback",
OAIF): DPO whose pairs are sampled from the policy being trained and judged as they come,
instead of a fixed offline set of comparisons (which goes off-policy as the policy moves away
from whatever produced it; Guo et al., introduction).

Each iteration (Guo et al., Algorithm 1):
1. sample two responses y1, y2 ~ pi_theta(. | x) for each of B prompts from the current policy;
2. a judge says which is better. OAIF prompts an LLM annotator; here the judge is
   - "reward": the reward (`--reward rm:PATH`, `fn:module:function`, weighted sums; the online
     trainers' `train/rewards.py`): the higher-scored response wins, or
   - "labelers": the simulated labeler pool (`feedback/labelers.py`), one labeler per pair judging
     by the task's gold taste with its noise (Bradley-Terry temperature, careless flips, a taste
     for length, ties);
   pairs the judge ties carry no preference and are dropped;
3. one DPO step (Rafailov et al. 2023, eq. 7; `ops.losses.dpo`) on the (chosen, rejected) pairs,
   against the frozen reference pi_ref, the initial (SFT) policy. `loss` picks
   another loss of `ops.preference.PAIR_LOSSES` (ipo, cdpo, robust, hinge, rpo; simpo and orpo
   do without the reference, which is then only what the KL is measured against); Guo et al.
   made IPO and SLiC (the hinge) online the same way.
Logged: the judged reward (reward judge), gold score, the judge's agreement with gold, the
implicit-reward accuracy of the step's pairs (`online_dpo/accuracy`) and KL(pi || pi_ref).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.labelers import LabelerPool
from rlhfkit.feedback.records import Completions
from rlhfkit.lm.forward import response_forward
from rlhfkit.lm.models import LoRAConfig
from rlhfkit.lm.sampling import generate
from rlhfkit.logging import get_logger
from rlhfkit.ops.kl import kl_estimate
from rlhfkit.ops.logprobs import masked_sum
from rlhfkit.ops.preference import PAIR_LOSSES, PairLogps, PairLossConfig, pair_loss
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import accelerator_for
from rlhfkit.train.online import (
    RolloutConfig,
    Setup,
    drive,
    gold_metrics,
    no_dropout,
    per_process,
    score_rollout,
    setup,
)
from rlhfkit.train.rewards import reward_specs
from rlhfkit.train.rollouts import rollout_sampler
from rlhfkit.types import Rollout

log = get_logger(__name__)


@dataclass
class OnlineDPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference policy")
    judge: Literal["reward", "labelers"] = F("reward", "who picks the better of each pair: the reward (higher "
                                                       "score wins) or the simulated labelers (the task's gold)")
    reward_model: str | None = F(None, "reward model folder from `rlhfkit rm` (same as --reward rm:PATH)")
    rewards: list[str] = F([], "reward parts: rm:PATH or fn:module:function, each optionally @weight; summed "
                               "(the judge with judge=reward; only logged with judge=labelers)")
    rollout: RolloutConfig = F(RolloutConfig(batch_prompts=16), "sampling (prompts per batch, global; two "
                                                                "responses each)")
    loss: str = F("sigmoid", "pairwise loss: " + ", ".join(PAIR_LOSSES) + " (sigmoid: DPO; simpo, orpo: no "
                             "reference in the loss)")
    beta: float = F(PairLossConfig.beta, "DPO temperature: strength of the implicit KL constraint to the reference "
                    "(also IPO's tau, the hinge's scale)")
    label_smoothing: float = F(PairLossConfig.label_smoothing, "cdpo, robust: assumed label-flip rate, in [0, 0.5)")
    rpo_alpha: float = F(PairLossConfig.rpo_alpha, "rpo: weight of the chosen response's NLL per token")
    simpo_beta: float = F(PairLossConfig.simpo_beta, "simpo: reward scale of the average log-prob")
    simpo_gamma: float = F(PairLossConfig.simpo_gamma, "simpo: target reward margin gamma")
    orpo_lambda: float = F(PairLossConfig.orpo_lambda, "orpo: weight of the odds-ratio term")
    judge_flip: float = F(0.0, "probability of reversing each verdict of the judge (a noise study: careless "
                               "labels at a known rate)")
    iterations: int = F(60, "rollout batches (one DPO step each)")
    lr: float = F(1e-5, "Adam learning rate")
    grad_clip: float = F(1.0, "max gradient norm")
    checkpoint_every: int = F(20, "iterations between checkpoints (0: only the final model)")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters on the policy (off by default); the reference is then the "
                                       "policy with its adapter disabled, and final/ holds the merged model")
    mixed_precision: str = F("fp32", "autocast for sampling, scoring and training: fp32, bf16 or fp16")
    gradient_checkpointing: bool = F(False, "recompute the policy's activations in the backward pass: less memory")


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on a batch of pairs (rows 2i and 2i + 1 of the rollout are pair i)."""

    prefer: torch.Tensor  # (P,) +1: the first response wins, -1: the second, 0: a tie (dropped)
    metrics: dict[str, float]  # what to log about the judging (scores, gold, agreement)


def reward_judge(s: Setup, rollout: Rollout) -> Judgement:
    """The higher-scored response of each pair wins; equal scores are a tie."""
    score, parts = score_rollout(s, rollout)  # (N,)
    prefer = torch.sign(score[0::2] - score[1::2])  # (P,)
    m = {"rollout/score": score.mean().item(), **parts, **gold_metrics(s, score, rollout.prompts, rollout.responses)}
    if "rollout/rm_gold_agreement" in m:  # the judge is the reward: its agreement is the reward's
        m["online_dpo/judge_gold_agreement"] = m["rollout/rm_gold_agreement"]
    return Judgement(prefer, m)


def labelers_judge(s: Setup, rollout: Rollout) -> Judgement:
    """One simulated labeler of the pool per pair, handed the task's gold score of both responses.
    The pool's noise is seeded from torch's generator, which checkpoints save per process: a
    resumed run judges as the uninterrupted one does, and each DDP process draws its own."""
    assert s.gold is not None
    prompts, responses = list(rollout.prompts), list(rollout.responses)
    g = torch.tensor(s.gold.batch(prompts, responses), dtype=torch.float32)  # (N,)
    gold = {(x, y): v for x, y, v in zip(prompts, responses, g.tolist())}
    pairs = [Completions(prompts[i], (responses[i], responses[i + 1])) for i in range(0, len(prompts), 2)]
    pool = LabelerPool(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
    labels = pool.compare_all(pairs, lambda x, y: gold[(x, y)])
    prefer = torch.tensor([0.0 if c.tie else (1.0 if c.chosen == p.responses[0] else -1.0)
                           for c, p in zip(labels, pairs)])  # (P,)
    dg = g[0::2] - g[1::2]  # (P,)
    decided = (prefer != 0) & (dg != 0)
    agree = ((prefer > 0) == (dg > 0))[decided].float().mean().item() if decided.any() else float("nan")
    m = {"rollout/gold": g.mean().item(), "online_dpo/judge_gold_agreement": agree}
    if s.reward is not None:  # a reward given beside the labelers is only watched
        score, parts = score_rollout(s, rollout)
        m.update({"rollout/score": score.mean().item(), **parts})
    return Judgement(prefer.to(rollout.ids.device), m)


JUDGES: dict[str, Callable[[Setup, Rollout], Judgement]] = {"reward": reward_judge, "labelers": labelers_judge}


class _FixedBeta:
    """DPO's beta is fixed: the checkpoint's "kl" and "reward_norm" slots stay empty."""

    def __init__(self, beta: float) -> None:
        self.value = beta

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def run(cfg: OnlineDPOConfig) -> dict:
    if not 0.0 <= cfg.judge_flip < 0.5:
        raise UserError(f"online-dpo: judge_flip must be in [0, 0.5), got {cfg.judge_flip}")
    if cfg.judge not in JUDGES:
        raise UserError(f"online-dpo: judge must be one of {list(JUDGES)}, got {cfg.judge!r}")
    pair_loss(cfg.loss)  # an unknown loss fails before anything loads,
    PairLossConfig.from_fields(cfg)  # and so does a bad hyperparameter
    specs = reward_specs(cfg.rewards, cfg.reward_model)
    if cfg.judge == "reward" and not specs:
        raise UserError("online-dpo: judge=reward needs a reward: --reward-model PATH, or --reward rm:PATH / "
                        "fn:module:function; or --judge labelers (the simulated labelers and the task's gold)")
    seed_everything(cfg.seed)
    acc = accelerator_for(cfg.device, cfg.mixed_precision)
    run_dir = RunDir.create(cfg.out or "runs/online-dpo", cfg)
    s = setup(cfg.policy, specs or None, cfg.rollout, cfg.seed, "online-dpo", cfg.lora, acc, ref=True)
    if cfg.judge == "labelers" and s.gold is None:
        raise UserError(f"online-dpo: judge=labelers needs a task with a gold scorer for the labelers to share; "
                        f"{cfg.rollout.task} has none (use judge=reward with --reward)")
    no_dropout(s.policy, cfg.gradient_checkpointing)
    opt = torch.optim.Adam([p for p in s.policy.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-8)
    B, W = cfg.rollout.batch_prompts, s.dist.world
    sampler = rollout_sampler(cfg.rollout.backend, cfg.policy, s.policy, s.tokenizer, cfg.rollout.max_new_tokens,
                              B * 2, cfg.seed, W)
    accounting = [("processes", W), ("prompts per rollout batch (global)", B),
                  ("prompts per process", per_process(B, W)), ("samples per prompt", 2),
                  ("samples per rollout batch", B * 2), ("optimizer steps per rollout batch", 1),
                  ("rollout batches", cfg.iterations)]
    state, judge = _FixedBeta(cfg.beta), JUDGES[cfg.judge]

    def step(it: int, opt: Any) -> dict[str, float]:
        return online_dpo_iteration(s, opt, cfg, judge, sampler)

    return drive(cfg, s, acc, run_dir, "online-dpo", s.policy, opt, state, state, step, accounting)


def online_dpo_iteration(s: Setup, opt: Any, cfg: OnlineDPOConfig,
                         judge: Callable[[Setup, Rollout], Judgement] = reward_judge,
                         sampler: Any = None) -> dict[str, float]:
    """Guo et al. Algorithm 1, one batch: sample a pair per prompt (this process's prompts), judge
    it, and take one DPO step on the pairs the judge decided."""
    rc, d = cfg.rollout, s.dist
    prompts = [p for p in s.next_prompts(rc.batch_prompts) for _ in range(2)]  # pair i: rows 2i, 2i + 1
    with torch.no_grad(), s.autocast():
        rollout = (generate(s.policy, s.tokenizer, prompts, max_new_tokens=rc.max_new_tokens,
                            temperature=rc.temperature)
                   if sampler is None else sampler(s.policy, s.tokenizer, prompts, rc.max_new_tokens, rc.temperature))
        ref = s.reference(rollout).logp  # (N, R)
    verdict = judge(s, rollout)
    if cfg.judge_flip > 0:  # drawn from torch's generator, which checkpoints save: resume stays exact
        flip = (torch.rand(verdict.prefer.shape) < cfg.judge_flip).to(verdict.prefer.device)  # (P,)
        verdict = Judgement(torch.where(flip, -verdict.prefer, verdict.prefer),
                            {**verdict.metrics, "online_dpo/flipped": flip.float().mean().item()})
    module = s.train_module if s.train_module is not None else s.policy
    mask = rollout.response_mask.float()  # (N, R)
    logp = response_forward(module, rollout).logp  # (N, R), with grad
    seq_kl = masked_sum(kl_estimate(logp.detach(), ref, "k1"), mask, -1)  # (N,) KL(pi || pi_ref) per sample
    out = _dpo_step(s, opt, cfg, verdict.prefer, masked_sum(logp, mask, -1), masked_sum(ref, mask, -1),
                    mask.sum(-1))
    local = {"rollout/length": mask.sum(-1).mean().item(), "rollout/kl": seq_kl.mean().item(),
             "online_dpo/tie_fraction": (verdict.prefer == 0).float().mean().item(), **verdict.metrics}
    return {**out, **d.mean_metrics(local, len(prompts))}


def _dpo_step(s: Setup, opt: Any, cfg: OnlineDPOConfig, prefer: torch.Tensor, logp: torch.Tensor,
              ref: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """One optimizer step of the pair loss on the decided pairs: `prefer` (P,) the verdicts,
    `logp` (N,) the summed response log-probs with grad, `ref` (N,) the reference's, `tokens` (N,)
    the response lengths (for the length-normalized losses). A process whose pairs are all ties
    takes a zero step, so every process joins every step (DDP)."""
    assert logp.shape == ref.shape == tokens.shape == (2 * prefer.shape[0],), (tuple(logp.shape), tuple(prefer.shape))
    module = s.train_module if s.train_module is not None else s.policy
    kept = prefer != 0  # (P,)
    n = int(kept.sum().item())
    if n == 0:
        s.dist.backward(opt, logp.sum() * 0.0 * s.dist.share_weight(0), cfg.grad_clip, module)
        return s.dist.step_metrics({}, "online_dpo", 0)
    first = prefer[kept] > 0  # (K,) the first response of the pair was chosen

    def chosen_rejected(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[0::2][kept], x[1::2][kept]  # (K,) each
        return torch.where(first, a, b), torch.where(first, b, a)

    (pc, pr), (rc, rr), (nc, nr) = chosen_rejected(logp), chosen_rejected(ref), chosen_rejected(tokens)
    out = pair_loss(cfg.loss).fn(PairLogps(pc, pr, nc, nr, rc, rr), PairLossConfig.from_fields(cfg), 1.0, None)
    s.dist.backward(opt, out.loss * s.dist.share_weight(n), cfg.grad_clip, module)  # a mean over n pairs here
    return s.dist.step_metrics({k: [v] for k, v in {"loss": out.loss.item(), **out.metrics}.items()},
                               "online_dpo", n)
