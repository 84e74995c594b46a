"""Pretraining: next-token prediction on a corpus (every token is a target).

With no `--model`, a byte-level BPE tokenizer is trained on the corpus and a tiny
GPT is built from `ModelConfig`; with `--model PATH`, that model keeps training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhfkit.config import F, ModelConfig, RunConfig
from rlhfkit.feedback.formats import read_text_rows
from rlhfkit.lm.data import lm_blocks, token_logprobs
from rlhfkit.lm.models import (
    build_tiny_gpt,
    load_policy,
    load_tokenizer,
    save_model,
    train_tokenizer,
)
from rlhfkit.logging import MetricsLogger, get_logger
from rlhfkit.ops.losses import sft_nll
from rlhfkit.runtime import RunDir, seed_everything
from rlhfkit.tasks.base import corpus_of, load_task
from rlhfkit.train.dist import is_main_process
from rlhfkit.train.supervised import OptimConfig, fit

log = get_logger(__name__)


@dataclass
class PretrainConfig(RunConfig):
    model: ModelConfig = F(ModelConfig(), "the model to build or continue training")
    optim: OptimConfig = F(OptimConfig(lr=2e-3, batch_size=32, epochs=1.0), "optimizer and schedule")
    data: str | None = F(None, "text corpus: .txt (one document per line) or .jsonl with a 'text' field; "
                               "None generates the embedded review corpus")
    corpus_docs: int = F(24000, "documents in the generated corpus")
    task: str = F("reviews", "the task giving the data when none is given: reviews (embedded) or module:attribute")
    task_seed: int = F(0, "seed of the embedded task's generator")
    eval_docs: int = F(500, "held-out documents for the final perplexity")


def read_corpus(path: str | Path) -> list[str]:
    return read_text_rows(path, "text", "corpus")


def run(cfg: PretrainConfig) -> dict:
    t0 = time.time()
    seed_everything(cfg.seed)
    run_dir = RunDir.create(cfg.out or "runs/pretrain", cfg)
    docs = read_corpus(cfg.data) if cfg.data else corpus_of(load_task(cfg.task, cfg.task_seed), cfg.corpus_docs + cfg.eval_docs)
    eval_docs, train_docs = docs[: cfg.eval_docs], docs[cfg.eval_docs:]
    tok_dir = run_dir.path / "tokenizer"
    if cfg.model.path:
        model, tok = load_policy(cfg.model.path)
        block = min(cfg.model.n_positions, model.config.max_position_embeddings if hasattr(
            model.config, "max_position_embeddings") else cfg.model.n_positions)
    else:
        if cfg.resume and tok_dir.exists():
            tok = load_tokenizer(tok_dir)
        else:
            tok = train_tokenizer(train_docs, cfg.model.vocab_size)  # the same on every process
            if is_main_process():
                tok.save_pretrained(tok_dir)
        model = build_tiny_gpt(cfg.model, tok)
        block = cfg.model.n_positions
    blocks = lm_blocks(tok, train_docs, block)
    log.info("pretrain: %d documents, %d tokens in %d blocks of %d; %.2fM parameters", len(train_docs),
             blocks.numel(), len(blocks), block, sum(p.numel() for p in model.parameters()) / 1e6)

    def loss_fn(idx: list[int]):
        ids = blocks[idx].to(model.device)  # (B, T); the model is on the accelerator's device by now
        lp = token_logprobs(model, ids, torch.ones_like(ids))  # (B, T-1)
        return sft_nll(lp, torch.ones_like(lp))

    with MetricsLogger(run_dir.path if is_main_process() else None, cfg.log, resume=cfg.resume) as logger:
        steps = fit(run_dir, model, tok, len(blocks), loss_fn, cfg.optim, cfg.seed, logger, "pretrain",
                    resume=cfg.resume, device=cfg.device)
        eval_nll = evaluate_nll(model, tok, eval_docs, block)
        logger.log({"eval/lm/nll": eval_nll}, steps)
    summary = {"final": str(run_dir.final), "steps": steps, "train_tokens": int(blocks.numel()),
               "eval_nll": eval_nll, "eval_ppl": float(torch.tensor(eval_nll).exp()), "wall_s": time.time() - t0}
    if is_main_process():  # one writer under `accelerate launch`
        save_model(model, tok, run_dir.final)
        run_dir.write_summary(summary)
    log.info("pretrain: eval perplexity %.2f; model in %s", summary["eval_ppl"], run_dir.final)
    return summary


@torch.no_grad()
def evaluate_nll(model, tok, docs: list[str], block: int, batch_size: int = 32) -> float:
    """Mean next-token NLL on held-out documents."""
    blocks = lm_blocks(tok, docs, block)
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i: i + batch_size].to(model.device)
        lp = token_logprobs(model, ids, torch.ones_like(ids))
        total += -lp.sum().item()
        count += lp.numel()
    model.train()
    return total / max(1, count)
