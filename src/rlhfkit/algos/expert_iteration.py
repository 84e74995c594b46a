"""Expert iteration (Anthony et al. 2017; "rejection-sampling fine-tuning" in the
RLHF comparisons of Dubois et al. 2023): each round, sample n responses per prompt,
keep the one the reward model likes best, and fine-tune on those with the SFT loss."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rlhfkit.algos.best_of_n import best_of_n
from rlhfkit.algos.loop import OptimConfig, fit
from rlhfkit.algos.rollout import PromptStream, RewardModel
from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Demonstration
from rlhfkit.lm.data import sft_batch, token_logprobs
from rlhfkit.lm.models import load_policy, save_model
from rlhfkit.lm.sampling import load_prompts
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.ops.losses import sft_nll
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.types import batch_to

log = get_logger(__name__)


@dataclass
class ExpertIterationConfig(RunConfig):
    policy: str | None = F(None, "initial policy (the SFT model)")
    reward_model: str | None = F(None, "reward model that picks the best samples")
    rounds: int = F(3, "sample-select-finetune rounds")
    prompts_per_round: int = F(256, "prompts sampled each round")
    n: int = F(8, "samples per prompt")
    prompts: str | None = F(None, "training prompts file; None: the embedded task's RL prompts")
    n_prompts: int = F(2000, "embedded prompts to draw")
    task_seed: int = F(0, "seed of the embedded task's generator")
    max_new_tokens: int = F(48, "max response tokens")
    max_len: int = F(96, "max tokens of prompt + response in fine-tuning")
    optim: OptimConfig = F(OptimConfig(lr=1e-4, batch_size=32, epochs=2.0, checkpoint_every=0), "fine-tuning")


def run(cfg: ExpertIterationConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or cfg.reward_model is None:
        raise UserError("expert-iter: give --policy PATH and --reward-model PATH")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/expert-iter", cfg)
    policy, tok = load_policy(cfg.policy)
    reward = RewardModel(cfg.reward_model)
    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.task_seed, "rl")
    stream = PromptStream(prompts, cfg.seed)
    rounds = []
    with MetricsLogger(run_dir.path, cfg.log) as logger:
        for r in range(cfg.rounds):
            batch = stream.next(cfg.prompts_per_round)
            best, best_scores, all_scores = best_of_n(policy, tok, reward, batch, cfg.n,
                                                      max_new_tokens=cfg.max_new_tokens)
            demos = [Demonstration(p, y) for p, y in zip(batch, best) if y.strip()]
            logger.log({"expert_iter/best_score": best_scores.mean().item(),
                        "expert_iter/mean_score": all_scores.mean().item()}, r)
            rounds.append({"round": r, "best_score": best_scores.mean().item(), "mean_score": all_scores.mean().item()})
            log.info("expert-iter round %d: policy mean score %.3f, best-of-%d %.3f", r, rounds[-1]["mean_score"],
                     cfg.n, rounds[-1]["best_score"])

            def loss_fn(idx: list[int], demos: list[Demonstration] = demos):
                b = batch_to(sft_batch(tok, [demos[i] for i in idx], cfg.max_len), policy.device)
                return sft_nll(token_logprobs(policy, b.input_ids, b.attention_mask), b.loss_mask[:, 1:])

            fit(RunDir(run_dir.path / f"round-{r}"), policy, tok, len(demos), loss_fn, cfg.optim, cfg.seed + r,
                logger, f"expert-iter round {r}", device=cfg.device)
    save_model(policy, tok, run_dir.final)
    summary = {"final": str(run_dir.final), "rounds": rounds, "wall_s": time.time() - t0}
    run_dir.write_summary(summary)
    return summary
