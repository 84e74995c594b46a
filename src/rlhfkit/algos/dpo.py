"""Direct preference optimization (Rafailov et al. 2023): the policy itself is the
reward model, r(x, y) = beta log pi(y|x) / pi_ref(y|x), fitted with the Bradley-Terry
loss on the comparisons (`ops.losses.dpo` calls `bradley_terry`). The reference
log-probs are computed once, before training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rlhfkit.algos.loop import OptimConfig, fit, is_main_process
from rlhfkit.algos.reward_model import split_by_prompt
from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Comparison, Ranking, expand_to_comparisons
from rlhfkit.lm.data import preference_batch, sequence_logprob
from rlhfkit.lm.models import LoRAConfig, load_policy, merged, save_model, with_lora
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.ops.losses import LossOutput, dpo
from rlhfkit.runtime import RunDir, seed_everything

log = get_logger(__name__)


@dataclass
class DPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference")
    data: str | None = F(None, "comparisons or rankings (any supported format)")
    beta: float = F(0.1, "DPO temperature: strength of the implicit KL constraint")
    drop_ties: bool = F(True, "skip tied pairs (a tie carries no preference for DPO to fit)")
    heldout_frac: float = F(0.1, "fraction of prompts held out for implicit-reward accuracy")
    max_len: int = F(96, "max tokens of prompt + response")
    optim: OptimConfig = F(OptimConfig(lr=1e-4, batch_size=32, epochs=2.0, checkpoint_every=500), "optimizer")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters (off by default); final/ holds the merged model")


@torch.no_grad()
def pair_logprobs(model, tok, pairs: list[Comparison], max_len: int, batch_size: int = 64,
                  desc: str = "reference log-probs") -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected, (N,) each."""
    model.eval()
    lc, lr = [], []
    for i in progress(range(0, len(pairs), batch_size), desc=desc):
        b = preference_batch(tok, pairs[i: i + batch_size], max_len)
        lc.append(sequence_logprob(model, b.chosen_ids, b.chosen_attention, b.chosen_response_mask))
        lr.append(sequence_logprob(model, b.rejected_ids, b.rejected_attention, b.rejected_response_mask))
    return torch.cat(lc), torch.cat(lr)


def run(cfg: DPOConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or cfg.data is None:
        raise UserError("dpo: give --policy PATH and --data FILE")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/dpo", cfg)
    records = read_records(cfg.data, expect=(Comparison, Ranking))
    held = split_by_prompt([r.prompt for r in records], cfg.heldout_frac, cfg.seed)
    train = [c for c in expand_to_comparisons([r for r, h in zip(records, held) if not h])
             if not (cfg.drop_ties and c.tie)]
    test = [c for c in expand_to_comparisons([r for r, h in zip(records, held) if h]) if not c.tie]
    model, tok = load_policy(cfg.policy)
    # LoRA's B starts at zero, so the adapted model is still the reference here.
    model = with_lora(model, cfg.lora)
    ref_c, ref_r = pair_logprobs(model, tok, train, cfg.max_len)
    model.train()

    def loss_fn(idx: list[int]) -> LossOutput:
        b = preference_batch(tok, [train[i] for i in idx], cfg.max_len)
        pc = sequence_logprob(model, b.chosen_ids, b.chosen_attention, b.chosen_response_mask)
        pr = sequence_logprob(model, b.rejected_ids, b.rejected_attention, b.rejected_response_mask)
        i = torch.tensor(idx)
        return dpo(pc, pr, ref_c[i], ref_r[i], cfg.beta, target=b.target, weights=b.weight)

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        steps = fit(run_dir, model, tok, len(train), loss_fn, cfg.optim, cfg.seed, logger, "dpo",
                    resume=cfg.resume, device=cfg.device)
        acc = None
        if test:
            ref = load_policy(cfg.policy)[0]
            tc, tr = pair_logprobs(model, tok, test, cfg.max_len, desc="held-out log-probs")
            rc, rr = pair_logprobs(ref, tok, test, cfg.max_len, desc="held-out reference")
            acc = ((tc - rc) > (tr - rr)).float().mean().item()
            logger.log({"eval/dpo/implicit_reward_accuracy": acc}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "train_pairs": len(train),
               "heldout_implicit_accuracy": acc, "n_heldout": len(test), "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("dpo: held-out implicit-reward accuracy %s on %d pairs", acc, len(test))
    return summary
