"""`rlhfkit rank COMPARISONS.jsonl --out DIR`: Bradley-Terry scores and the Condorcet, Copeland
and Borda winners of the items (response strings) that comparison or ranking records judge.

Input rows: any format `rlhfkit.feedback.formats.read_records` reads (comparisons, rankings with
`ranks`, TRL `prompt/chosen/rejected`, ...), or bare `{"winner": A, "loser": B}` rows (optional
`tie`, `weight`, `labeler`). Writes config.yaml, preference_matrix.png and summary.json with
`scores` (item -> centred score), `se`, `condorcet` (item or null), `copeland` and `borda` (lists
of winners) and their score tables.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhfkit.aggregation.bradley_terry import AggregationError, counts_from_comparisons, fit_bradley_terry
from rlhfkit.aggregation.reliability import fit_with_reliability
from rlhfkit.aggregation.winners import preference_matrix, winners
from rlhfkit.command import Command, Flag
from rlhfkit.config import F, RunConfig
from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import FormatError, read_records, row_to_record
from rlhfkit.feedback.records import Comparison, Ranking, RecordError, expand_to_comparisons
from rlhfkit.logging import get_logger
from rlhfkit.runtime import RunDir

log = get_logger(__name__)


def _winner_loser(row: dict) -> Comparison:
    for f in ("winner", "loser"):
        if f not in row:
            raise RecordError(f, "missing (a winner/loser row needs both)")
    known = {"winner", "loser", "tie", "weight", "labeler", "prompt"}
    for k in row:
        if k not in known:
            raise RecordError(k, f"unknown field for a winner/loser row; known: {sorted(known)}")
    return Comparison(row.get("prompt", ""), row["winner"], row["loser"], tie=row.get("tie", False),
                      weight=row.get("weight", 1.0), labeler=row.get("labeler"))


def read_comparisons(path: str | Path) -> list[Comparison]:
    """Comparisons from comparison/ranking records or winner/loser rows; errors name file:line:field."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, None, None, "no such file")
    if p.is_dir() or p.suffix == ".parquet":
        records = read_records(p, expect=(Comparison, Ranking))
    else:
        records = []
        with open(p, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise FormatError(p, lineno, None, f"malformed JSON ({e.msg} at column {e.colno})") from None
                try:
                    rec = _winner_loser(row) if isinstance(row, dict) and "winner" in row else row_to_record(row)
                except RecordError as e:
                    raise FormatError(p, lineno, e.field, e.message) from None
                if not isinstance(rec, (Comparison, Ranking)):
                    raise FormatError(p, lineno, None, f"found a {rec.kind} record; rank needs comparisons or rankings")
                records.append(rec)
    comps = expand_to_comparisons(records)
    if not comps:
        raise FormatError(p, None, None, "the file holds no comparisons")
    return comps


@dataclass
class RankConfig(RunConfig):
    """Aggregate pairwise judgments of a few items into scores and winners."""

    input: str = F("", "comparisons: JSONL/Parquet records, or {winner, loser} rows")
    ties: str = F("half", "half: a tie is half a win for each side; davidson: Davidson's tie model")
    l2: float = F(0.0, "L2 prior on the scores (needed when some item never wins or never loses)")
    reliability: bool = F(False, "estimate per-labeler reliability weights and refit (labelers must be named)")


def _heatmap(path: Path, M: np.ndarray, names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = len(names)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.6 * K), max(3.5, 0.8 + 0.6 * K)))
    im = ax.imshow(np.ma.masked_invalid(M), cmap="RdBu", vmin=0.0, vmax=1.0)
    short = [n if len(n) <= 24 else n[:21] + "..." for n in names]
    ax.set_xticks(range(K), short, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(K), short, fontsize=8)
    if K <= 15:
        for i in range(K):
            for j in range(K):
                if np.isfinite(M[i, j]):
                    ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("P(row beats column), ties half")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_rank(cfg: RankConfig) -> dict:
    if not cfg.input:
        raise UserError("rank: give the comparisons file, e.g. rlhfkit rank comparisons.jsonl --out runs/rank")
    if cfg.ties not in ("half", "davidson"):
        raise UserError(f"ties must be half or davidson, got {cfg.ties!r}")
    comps = read_comparisons(cfg.input)
    run = RunDir.create(cfg.out or f"runs/rank-{time.strftime('%Y%m%d-%H%M%S')}", cfg)
    labeler_weights = None
    try:
        if cfg.reliability:
            result, labeler_weights = fit_with_reliability(comps, l2=cfg.l2, ties=cfg.ties)
        else:
            result = fit_bradley_terry(counts_from_comparisons(comps), ties=cfg.ties, l2=cfg.l2)
    except AggregationError as e:
        raise UserError(f"{cfg.input}: {e}") from None
    counts = counts_from_comparisons(comps, labeler_weights, items=result.items)
    M = preference_matrix(counts)
    win = winners(M)
    names = list(result.items)
    summary = {
        "scores": result.as_dict(),
        "se": {n: float(s) for n, s in zip(names, result.se)},
        "condorcet": None if win.condorcet is None else names[win.condorcet],
        "copeland": [names[i] for i in win.copeland],
        "borda": [names[i] for i in win.borda],
        "copeland_scores": {n: float(s) for n, s in zip(names, win.copeland_scores)},
        "borda_scores": {n: float(s) for n, s in zip(names, win.borda_scores)},
        "n_items": len(names), "n_comparisons": len(comps), "tie_model": result.tie_model,
        "nu": result.nu, "nll": result.nll, "iterations": result.iterations,
        "labeler_weights": labeler_weights,
    }
    _heatmap(run.path / "preference_matrix.png", M, names)
    run.write_summary(summary)
    _print_table(summary, names, result.scores, result.se)
    return summary


def _print_table(summary: dict, names: list[str], scores: np.ndarray, se: np.ndarray) -> None:
    out = sys.stdout
    width = min(max(len(n) for n in names), 40)
    out.write(f"{'item':<{width}}  {'score':>8}  {'se':>6}  {'copeland':>8}  {'borda':>6}\n")
    for k in np.argsort(-scores):
        n = names[k]
        label = n if len(n) <= width else n[: width - 3] + "..."
        out.write(f"{label:<{width}}  {scores[k]:>8.3f}  {se[k]:>6.3f}  {summary['copeland_scores'][n]:>8.1f}"
                  f"  {summary['borda_scores'][n]:>6.2f}\n")
    out.write(f"condorcet winner: {summary['condorcet'] if summary['condorcet'] is not None else 'none'}\n")
    out.write(f"copeland winner(s): {', '.join(summary['copeland'])}\n")
    out.write(f"borda winner(s): {', '.join(summary['borda'])}\n")


COMMANDS: list[Command] = [
    Command("rank", "Bradley-Terry scores and Condorcet/Copeland/Borda winners from comparisons", run_rank,
            RankConfig, (
                Flag("input", "input", "comparisons file (JSONL, Parquet, or a saved dataset folder)",
                     positional=True),
                Flag("--ties", "ties", "half or davidson", choices=("half", "davidson")),
                Flag("--l2", "l2", "L2 prior on the scores", type=float),
                Flag("--reliability", "reliability", "estimate per-labeler reliability weights",
                     action="store_true"),
            )),
]
