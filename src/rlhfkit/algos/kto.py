"""Kahneman-Tversky optimization (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect
Theoretic Optimization"): learning from unpaired binary feedback, a thumbs up or down on one
response, with no preference pairs.

The implicit reward is DPO's, r(x, y) = log pi(y|x) / pi_ref(y|x); its value is measured against
a reference point z0 = KL(pi || pi_ref), and a desirable response is pushed above it, an
undesirable one below (eq. 8, `ops.preference.kto`):

    v(x, y) = lambda_D sigma(beta (r - z0))  if y is desirable
              lambda_U sigma(beta (z0 - r))  if y is undesirable,   loss = E[lambda_y - v(x, y)].

z0 is estimated, detached, from *mismatched* pairs (x_i, y_j), j != i (sec. 4.1, "Implementation").
The paper shifts responses by one inside each microbatch; here each training example i is given
one partner j = partner(i) once, before training (a seeded cycle over the examples that skips
responses to the same prompt), so example i's KL term is the same whichever batch `fit` draws it
in, a resumed run recomputes it exactly, and its reference log-prob is computed once, like the
matched pairs' (as DPO's are). The batch's z0 averages the KL terms of the batch's examples over
all processes.

Any judgments are feedback (`feedback.records.to_feedback`): feedback records as they are, a rating
desirable when its score is at least `threshold`, a comparison's chosen response desirable and its
rejected undesirable, a ranking's best and worst.
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import (
    Comparison,
    Feedback,
    Ranking,
    Rating,
    split_by_prompt,
    to_feedback,
)
from rlhfkit.lm.data import collate_responses, encode_pairs, sequence_logprob
from rlhfkit.lm.models import (
    LoRAConfig,
    PrefixConfig,
    is_prefix_tuned,
    load_policy,
    merged,
    save_model,
    with_adapters,
)
from rlhfkit.logging import MetricsLogger, get_logger, progress
from rlhfkit.ops.losses import LossOutput
from rlhfkit.ops.preference import kto
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.train.dist import Dist, accelerator_for, is_main_process
from rlhfkit.train.supervised import OptimConfig, fit

log = get_logger(__name__)

# The paper's advice for imbalanced data (sec. 4.2): lambda_D n_D / (lambda_U n_U) in [1, 4/3].
WEIGHT_RATIO = (1.0, 4.0 / 3.0)


@dataclass
class KTOConfig(RunConfig):
    policy: str | None = F(None, "initial policy folder (the SFT model); also the reference")
    data: str | None = F(None, "binary feedback, ratings, comparisons or rankings (any supported format)")
    beta: float = F(0.1, "KTO temperature: strength of the implicit KL constraint")
    threshold: int = F(5, "a rating is desirable when its 1-7 score is at least this")
    lambda_d: float | str = F("auto", "weight of desirable examples; auto: see lambda_u")
    lambda_u: float | str = F("auto", "weight of undesirable examples; auto: the scarcer class is weighted up so "
                              "that lambda_d n_d / (lambda_u n_u) lies in [1, 4/3] (KTO paper, sec. 4.2)")
    heldout_frac: float = F(0.1, "fraction of prompts held out for the implicit-reward metrics")
    max_len: int = F(96, "max tokens of prompt + response")
    optim: OptimConfig = F(OptimConfig(lr=1e-4, batch_size=32, epochs=2.0, checkpoint_every=500), "optimizer")
    lora: LoRAConfig = F(LoRAConfig(), "LoRA adapters (off by default); final/ holds the merged model")
    prefix: PrefixConfig = F(PrefixConfig(), "prefix tuning (off by default); final/ holds the prefix and base/")


def class_weights(n_d: int, n_u: int, lambda_d: float | str = "auto", lambda_u: float | str = "auto"
                  ) -> tuple[float, float]:
    """(lambda_D, lambda_U). An "auto" weight starts at 1; if lambda_D n_D / (lambda_U n_U) then falls
    outside [1, 4/3] (Ethayarajh et al. 2024, sec. 4.2: "the KTO loss is ... robust to imbalance
    as long as" this holds), an auto weight is moved to bring the ratio to the nearest end of that
    range: with both auto, the scarcer class's (so 1 desirable to 10 undesirable gives lambda_D = 10,
    lambda_U = 1, the paper's example). With only one class there is nothing to balance."""
    for name, v in (("lambda_d", lambda_d), ("lambda_u", lambda_u)):
        if isinstance(v, str) and v != "auto":
            raise UserError(f"kto: {name}={v!r}: give a positive number or auto")
        if not isinstance(v, str) and not v > 0:
            raise UserError(f"kto: {name}={v!r} must be positive")
    ld = 1.0 if lambda_d == "auto" else float(lambda_d)
    lu = 1.0 if lambda_u == "auto" else float(lambda_u)
    if n_d == 0 or n_u == 0:
        return ld, lu
    ratio = ld * n_d / (lu * n_u)
    target = min(max(ratio, WEIGHT_RATIO[0]), WEIGHT_RATIO[1])
    if target == ratio:
        return ld, lu
    if lambda_d == "auto" and (ratio < WEIGHT_RATIO[0] or lambda_u != "auto"):
        ld = target * lu * n_u / n_d
    elif lambda_u == "auto":
        lu = ld * n_d / (target * n_u)
    else:
        log.warning("kto: lambda_d n_d / (lambda_u n_u) = %.3g lies outside [1, 4/3], the range the KTO "
                    "paper advises (sec. 4.2); lambda_d=auto, lambda_u=auto would choose it", ratio)
    return ld, lu


def kl_partners(prompts: Sequence[Hashable], seed: int, search: int = 64) -> list[int]:
    """partner[i]: the example whose response goes with example i's prompt in z0's mismatched
    pair (x_i, y_partner[i]). The examples form one seeded cycle; each takes the next example on it
    whose prompt differs from its own (looking `search` steps ahead at most, then the next one
    whatever its prompt), so no example is its own partner unless it is the only one."""
    n = len(prompts)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    partner = [0] * n
    for k, i in enumerate(order):
        j = order[(k + 1) % n]
        for step in range(1, min(n, search + 1)):
            if prompts[order[(k + step) % n]] != prompts[i]:
                j = order[(k + step) % n]
                break
        partner[i] = j
    return partner


@dataclass(frozen=True)
class EncodedFeedback:
    """One example tokenized once: (x_i, y_i), the mismatched (x_i, y_partner(i)) for z0, its label."""

    seq: tuple[list[int], int]  # (ids, index of the first response token)
    kl_seq: tuple[list[int], int]
    desirable: bool


def encode_feedback(tok, feedback: Sequence[Feedback], partners: Sequence[int] | None, max_len: int
                    ) -> list[EncodedFeedback]:
    """`partners` None: no KL sequences (held-out examples need none; `kl_seq` repeats `seq`)."""
    prompts = [f.prompt for f in feedback]
    seq = encode_pairs(tok, prompts, [f.response for f in feedback], max_len)
    kl = seq if partners is None else encode_pairs(tok, prompts, [feedback[j].response for j in partners], max_len)
    return [EncodedFeedback(s, k, f.desirable) for s, k, f in zip(seq, kl, feedback)]


def response_logps(model, seqs: Sequence[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """log pi(y|x) summed over the response tokens, (B,)."""
    ids, att, resp = collate_responses(seqs, pad_id)
    dev = model.device
    return sequence_logprob(model, ids.to(dev), att.to(dev), resp.to(dev))


@torch.no_grad()
def feedback_logps(model, enc: Sequence[EncodedFeedback], pad_id: int, kl: bool = True, batch_size: int = 64,
                   desc: str = "reference log-probs") -> tuple[torch.Tensor, torch.Tensor]:
    """log-probs of the matched and (with `kl`) the mismatched sequences, (N,) each, on the CPU."""
    model.eval()
    lp, kl_lp = [], []
    for i in progress(range(0, len(enc), batch_size), desc=desc):
        batch = enc[i: i + batch_size]
        lp.append(response_logps(model, [e.seq for e in batch], pad_id).float().cpu())
        if kl:
            kl_lp.append(response_logps(model, [e.kl_seq for e in batch], pad_id).float().cpu())
    return torch.cat(lp) if lp else torch.zeros(0), torch.cat(kl_lp) if kl_lp else torch.zeros(0)


def kto_loss_fn(model, tok, enc: list[EncodedFeedback], ref: torch.Tensor, kl_ref: torch.Tensor, beta: float,
                lambda_d: float, lambda_u: float, dist: Dist) -> Callable[[list[int]], LossOutput]:
    """The KTO loss of a batch of example indices against precomputed reference log-probs."""

    def loss_fn(idx: list[int]) -> LossOutput:
        batch = [enc[i] for i in idx]
        with torch.no_grad():  # z0 is detached (eq. 8): the mismatched pairs need no graph
            kl_pol = response_logps(model, [e.kl_seq for e in batch], tok.pad_token_id).float()  # (B,)
        pol = response_logps(model, [e.seq for e in batch], tok.pad_token_id)  # (B,)
        dev, i = pol.device, torch.tensor(idx)
        desirable = torch.tensor([e.desirable for e in batch], device=dev)
        # z0 is the global batch's: every process's mismatched pairs together
        kl_pol, kl_r = dist.gather(kl_pol), dist.gather(kl_ref[i].to(dev))
        return kto(pol, ref[i].to(dev), desirable, kl_pol, kl_r, beta=beta, lambda_d=lambda_d, lambda_u=lambda_u)
    return loss_fn


def heldout_metrics(policy: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, beta: float
                    ) -> dict[str, float | None]:
    """Implicit rewards beta log pi/pi_ref of held-out responses, (N,) each: the share of (desirable,
    undesirable) pairs whose desirable response scores higher (ties count half; 0.5 before
    training, where pi = pi_ref), and the mean reward of desirable minus undesirable responses."""
    r = beta * (policy - ref)  # (N,)
    rd, ru = r[desirable], r[~desirable]
    if len(rd) == 0 or len(ru) == 0:
        return {"implicit_auc": None, "implicit_margin": None}
    # The Mann-Whitney count without the (N_d, N_u) matrix: undesirable rewards below each desirable one.
    su = ru.sort().values
    below = torch.searchsorted(su, rd, right=False)  # (N_d,) strictly lower
    tied = torch.searchsorted(su, rd, right=True) - below
    auc = ((below + 0.5 * tied).sum() / (len(rd) * len(ru))).item()
    return {"implicit_auc": auc, "implicit_margin": (rd.mean() - ru.mean()).item()}


def _read_feedback(cfg: KTOConfig) -> list[Feedback]:
    records = read_records(cfg.data, expect=(Feedback, Rating, Comparison, Ranking))
    feedback = to_feedback(records, cfg.threshold)
    if not feedback:
        raise UserError(f"kto: {cfg.data} gives no feedback examples: its {len(records)} records are ratings "
                        "without a score, tied comparisons or rankings with best and worst tied")
    return feedback


def run(cfg: KTOConfig) -> dict:
    t0 = time.time()
    if cfg.policy is None or cfg.data is None:
        raise UserError("kto: give --policy PATH and --data FILE")
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/kto", cfg)
    feedback = _read_feedback(cfg)
    held = split_by_prompt([f.prompt for f in feedback], cfg.heldout_frac, cfg.seed)
    train = [f for f, h in zip(feedback, held) if not h]
    test = [f for f, h in zip(feedback, held) if h]
    if not train:
        raise UserError(f"kto: every prompt of {cfg.data} fell in the held-out split; lower heldout_frac")
    n_d = sum(f.desirable for f in train)
    lambda_d, lambda_u = class_weights(n_d, len(train) - n_d, cfg.lambda_d, cfg.lambda_u)
    log.info("kto: %d desirable, %d undesirable training examples; lambda_d=%.3g, lambda_u=%.3g",
             n_d, len(train) - n_d, lambda_d, lambda_u)
    model, tok = load_policy(cfg.policy)
    model = with_adapters(model, cfg.policy, "kto", cfg.lora, cfg.prefix)
    acc = accelerator_for(cfg.device, cfg.optim.mixed_precision)
    model.to(acc.device)
    enc = encode_feedback(tok, train, kl_partners([f.prompt for f in train], cfg.seed), cfg.max_len)
    test_enc = encode_feedback(tok, test, None, cfg.max_len)
    # The reference is the policy before its first step, with a prefix switched off (a fresh
    # prefix already changes the outputs); computed once, for the held-out examples too.
    with model.disable_adapter() if is_prefix_tuned(model) else nullcontext():
        ref, kl_ref = feedback_logps(model, enc, tok.pad_token_id)
        test_ref, _ = feedback_logps(model, test_enc, tok.pad_token_id, kl=False, desc="held-out reference")
    model.train()
    loss_fn = kto_loss_fn(model, tok, enc, ref, kl_ref, cfg.beta, lambda_d, lambda_u, Dist(acc))

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        steps = fit(run_dir, model, tok, len(train), loss_fn, cfg.optim, cfg.seed, logger, "kto",
                    resume=cfg.resume, device=cfg.device, accelerator=acc)
        desirable = torch.tensor([e.desirable for e in test_enc], dtype=torch.bool)
        test_pol, _ = feedback_logps(model, test_enc, tok.pad_token_id, kl=False, desc="held-out log-probs")
        metrics = heldout_metrics(test_pol, test_ref, desirable, cfg.beta)
        if metrics["implicit_auc"] is not None:
            logger.log({f"eval/kto/{k}": v for k, v in metrics.items()}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "train_examples": len(train),
               "train_desirable": n_d, "lambda_d": lambda_d, "lambda_u": lambda_u,
               "heldout_implicit_auc": metrics["implicit_auc"], "heldout_implicit_margin": metrics["implicit_margin"],
               "n_heldout": len(test), "wall_s": time.time() - t0}
    if is_main_process():
        save_model(merged(model), tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("kto: held-out implicit-reward AUC %s on %d examples", metrics["implicit_auc"], len(test))
    return summary
