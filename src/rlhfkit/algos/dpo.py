"""Direct preference optimization (Rafailov et al. 2023) and its family of pairwise losses.

The policy itself is the reward model, r(x, y) = beta log pi(y|x) / pi_ref(y|x), fitted with
the Bradley-Terry loss on the comparisons (`ops.losses.dpo` calls `bradley_terry`). `loss`
picks another loss of the table `ops.preference.PAIR_LOSSES` (ipo, cdpo, robust, hinge, rpo,
and the reference-free simpo and orpo), each with its hyperparameters as fields of the config.

    1. reference log-probs log pi_ref(y|x) of every training pair, computed once before
       training by the policy itself (its adapter off): no reference copy while training
    2. fit(loss_fn): each batch's policy log-probs (and response lengths) through the loss
    3. held-out accuracy of the loss's implicit reward; for a reference loss a frozen copy of
       the initial policy is loaded next to the trained one to score the held-out pairs

A reference-free loss (SimPO, ORPO) skips steps 1 and the reference copy of 3: its implicit
reward is the length-normalized log-prob of the policy alone.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import (
    Comparison,
    Ranking,
    expand_to_comparisons,
    split_by_prompt,
)
from rlhfkit.lm.data import (
    EncodedPreference,
    collate_preferences,
    encode_preferences,
    response_token_counts,
    sequence_logprob,
)
from rlhfkit.lm.models import (
    LoRAConfig,
    PrefixConfig,
    is_prefix_tuned,
    load_policy,
    merged,
    save_model,
    with_adapters,
)
from rlhfkit.lm.shared_prompt import can_share_prompt, collate_shared, shared_logprobs
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.ops.losses import LossOutput
from rlhfkit.ops.preference import (
    PAIR_LOSSES,
    PairLogps,
    PairLoss,
    PairLossConfig,
    pair_loss,
)
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import is_main_process
from rlhfkit.train.supervised import OptimConfig, fit
from rlhfkit.types import batch_to

log = get_logger(__name__)


@dataclass
class DPOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference")
    data: str | None = F(None, "comparisons or rankings (any supported format)")
    loss: str = F("sigmoid", "pairwise loss: " + ", ".join(PAIR_LOSSES) + " (simpo, orpo: no reference)")
    beta: float = F(PairLossConfig.beta, "DPO temperature: strength of the implicit KL constraint "
                    "(also IPO's tau, the hinge's scale)")
    label_smoothing: float = F(PairLossConfig.label_smoothing, "cdpo, robust: assumed label-flip rate, in [0, 0.5)")
    rpo_alpha: float = F(PairLossConfig.rpo_alpha, "rpo: weight of the chosen response's NLL per token")
    simpo_beta: float = F(PairLossConfig.simpo_beta, "simpo: reward scale of the average log-prob (paper: 2.0-2.5)")
    simpo_gamma: float = F(PairLossConfig.simpo_gamma, "simpo: target reward margin gamma")
    orpo_lambda: float = F(PairLossConfig.orpo_lambda, "orpo: weight of the odds-ratio term")
    drop_ties: bool = F(True, "skip tied pairs (a tie carries no preference for DPO to fit)")
    heldout_frac: float = F(0.1, "fraction of prompts held out for implicit-reward accuracy")
    max_len: int = F(96, "max tokens of prompt + response")
    share_prompt: bool = F(True, "run each pair's prompt once for both responses (same loss, fewer FLOPs)")
    optim: OptimConfig = F(OptimConfig(lr=1e-4, batch_size=32, epochs=2.0, checkpoint_every=500), "optimizer")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters (off by default); final/ holds the merged model")
    prefix: PrefixConfig = F(PrefixConfig(), "prefix tuning (off by default); final/ holds the prefix and base/")


def pair_sequence_logprobs(model, enc: Sequence[EncodedPreference], pad_id: int, share_prompt: bool = True
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_c|x) and log pi(y_r|x), (B,) each: the prompt run once for both responses
    (`lm.shared_prompt`), or, if the pair's prompts were cut differently, one forward over both
    full sequences."""
    if share_prompt and can_share_prompt(model) and (sb := collate_shared(enc, pad_id)) is not None:
        return shared_logprobs(model, batch_to(sb, model.device))
    b = batch_to(collate_preferences(enc, pad_id), model.device)
    T = max(b.chosen_ids.shape[1], b.rejected_ids.shape[1])

    def pad(x: torch.Tensor, value: int = 0) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)  # (B, T)

    ids = torch.cat([pad(b.chosen_ids), pad(b.rejected_ids)])  # (2B, T); pad ids are masked out
    att = torch.cat([pad(b.chosen_attention), pad(b.rejected_attention)])
    resp = torch.cat([pad(b.chosen_response_mask), pad(b.rejected_response_mask)])
    lp = sequence_logprob(model, ids, att, resp)  # (2B,)
    n = b.chosen_ids.shape[0]
    return lp[:n], lp[n:]


@torch.no_grad()
def pair_logprobs(model, tok, pairs: list[Comparison] | list[EncodedPreference], max_len: int,
                  batch_size: int = 64, desc: str = "reference log-probs", share_prompt: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected, (N,) each (on the CPU)."""
    model.eval()
    enc = pairs if pairs and isinstance(pairs[0], EncodedPreference) else encode_preferences(tok, pairs, max_len)
    lc, lr = [], []
    for i in progress(range(0, len(enc), batch_size), desc=desc):
        c, r = pair_sequence_logprobs(model, enc[i: i + batch_size], tok.pad_token_id, share_prompt)
        lc.append(c.float().cpu())
        lr.append(r.float().cpu())
    return (torch.cat(lc), torch.cat(lr)) if lc else (torch.zeros(0), torch.zeros(0))


def pair_token_counts(enc: Sequence[EncodedPreference]) -> tuple[torch.Tensor, torch.Tensor]:
    """|y_c|, |y_r|: the response tokens each summed log-prob of `pair_sequence_logprobs` covers,
    (B,) each (float, on the CPU), for the length-normalized losses."""
    return response_token_counts([e.chosen for e in enc]), response_token_counts([e.rejected for e in enc])


def dpo_loss_fn(model, tok, train: list[Comparison], ref_c: torch.Tensor | None, ref_r: torch.Tensor | None,
                beta: float, max_len: int, encoded: list[EncodedPreference] | None = None, share_prompt: bool = True,
                loss: str = "sigmoid", hp: PairLossConfig | None = None) -> Callable[[list[int]], LossOutput]:
    """The `loss` (a `PAIR_LOSSES` name; DPO's sigmoid by default) of a batch of `train` indices
    against precomputed reference log-probs (None for a reference-free loss). `hp` defaults to
    `PairLossConfig(beta=beta)`."""
    entry = pair_loss(loss)
    hp = hp if hp is not None else PairLossConfig(beta=beta)
    assert not entry.needs_reference or (ref_c is not None and ref_r is not None), f"{loss} needs reference log-probs"
    enc = encoded if encoded is not None else encode_preferences(tok, train, max_len)

    def loss_fn(idx: list[int]) -> LossOutput:
        batch = [enc[i] for i in idx]
        pc, pr = pair_sequence_logprobs(model, batch, tok.pad_token_id, share_prompt)  # (B,) each
        dev, i = pc.device, torch.tensor(idx)
        nc, nr = (n.to(dev) for n in pair_token_counts(batch))
        refs = (ref_c[i].to(dev), ref_r[i].to(dev)) if entry.needs_reference else (None, None)
        target = torch.tensor([e.target for e in batch], device=dev)
        weight = torch.tensor([e.weight for e in batch], device=dev)
        return entry.fn(PairLogps(pc, pr, nc, nr, *refs), hp, target, weight)
    return loss_fn


def heldout_accuracy(model, tok, test: list[Comparison], cfg: DPOConfig, entry: PairLoss, hp: PairLossConfig
                     ) -> float:
    """How often the loss's implicit reward ranks the held-out pairs right. A reference loss
    loads a frozen copy of the initial policy for it; a reference-free one needs the policy only."""
    enc = encode_preferences(tok, test, cfg.max_len)
    tc, tr = pair_logprobs(model, tok, enc, cfg.max_len, desc="held-out log-probs", share_prompt=cfg.share_prompt)
    refs: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    if entry.needs_reference:
        ref = load_policy(cfg.policy)[0].to(model.device)
        refs = pair_logprobs(ref, tok, enc, cfg.max_len, desc="held-out reference", share_prompt=cfg.share_prompt)
        del ref
    rc, rr = entry.reward(PairLogps(tc, tr, *pair_token_counts(enc), *refs), hp)  # (N,) each
    return (rc > rr).float().mean().item()


def run(cfg: DPOConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or cfg.data is None:
        raise UserError("dpo: give --policy PATH and --data FILE")
    entry, hp = pair_loss(cfg.loss), PairLossConfig.from_fields(cfg)  # bad names and values fail here
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/dpo", cfg)
    records = read_records(cfg.data, expect=(Comparison, Ranking))
    held = split_by_prompt([r.prompt for r in records], cfg.heldout_frac, cfg.seed)
    train = [c for c in expand_to_comparisons([r for r, h in zip(records, held) if not h])
             if not (cfg.drop_ties and c.tie)]
    test = [c for c in expand_to_comparisons([r for r, h in zip(records, held) if h]) if not c.tie]
    model, tok = load_policy(cfg.policy)
    model = with_adapters(model, cfg.policy, "dpo", cfg.lora, cfg.prefix)
    enc = encode_preferences(tok, train, cfg.max_len)
    ref_c = ref_r = None
    if entry.needs_reference:
        # The reference is the policy with its adapter off (a fresh prefix already changes the outputs).
        with model.disable_adapter() if is_prefix_tuned(model) else nullcontext():
            ref_c, ref_r = pair_logprobs(model, tok, enc, cfg.max_len, share_prompt=cfg.share_prompt)
    model.train()
    loss_fn = dpo_loss_fn(model, tok, train, ref_c, ref_r, cfg.beta, cfg.max_len, encoded=enc,
                          share_prompt=cfg.share_prompt, loss=cfg.loss, hp=hp)

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        steps = fit(run_dir, model, tok, len(train), loss_fn, cfg.optim, cfg.seed, logger, "dpo",
                    resume=cfg.resume, device=cfg.device)
        acc = heldout_accuracy(model, tok, test, cfg, entry, hp) if test else None
        if acc is not None:
            logger.log({"eval/dpo/implicit_reward_accuracy": acc}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "loss": cfg.loss, "train_pairs": len(train),
               "heldout_implicit_accuracy": acc, "n_heldout": len(test), "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("dpo (%s): held-out implicit-reward accuracy %s on %d pairs", cfg.loss, acc, len(test))
    return summary
