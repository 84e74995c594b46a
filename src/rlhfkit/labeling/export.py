"""`rlhfkit label export`: answers -> records (Ranking / Comparison / Rating JSONL) that
`rlhfkit rm --data` reads (Demonstration: `sft --data`; Feedback, a thumbs project's: `kto
--data`), or with `--format trl` the `prompt/chosen/rejected` rows of TRL's preference format
(`feedback.formats.preference_pairs`), or for binary feedback TRL's unpaired
`prompt/completion/label` rows (`feedback.formats.unpaired_rows`); the two cannot share a file.
Gold items are the researchers' checks and are left out; labelers below an
agreement-with-gold threshold can be dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import Record
from rlhfkit.labeling.kinds import kind_of
from rlhfkit.labeling.quality import project_quality


@dataclass
class ExportSummary:
    records: int = 0
    answers: int = 0
    dropped_labelers: list[str] = field(default_factory=list)  # below the gold-agreement threshold
    unchecked_labelers: list[str] = field(default_factory=list)  # answered no gold item (kept)
    no_judgment: int = 0  # answers that become no record (pairwise "can't tell")
    rows: int = 0  # rows written (records, or TRL pairs)
    skipped: dict[str, int] = field(default_factory=dict)  # --format trl: left out, by reason
    columns: str = ""  # --format trl: the rows' columns, "prompt/chosen/rejected" or "prompt/completion/label"


def collect_records(store: Any, project: str | None = None, min_gold_agreement: float | None = None,
                    summary: ExportSummary | None = None) -> list[Record]:
    """Records from every project (or one), oldest item first."""
    summary = summary if summary is not None else ExportSummary()
    names = [project] if project is not None else [p.name for p in store.projects()]
    out: list[Record] = []
    for name in names:
        kind = kind_of(store.project(name))  # a rating project's with its form
        rows = store.items_with_answers(name)
        dropped: set[str] = set()
        if min_gold_agreement is not None:
            for s in project_quality(kind, rows).labelers:
                if s.gold_agreement is None:
                    summary.unchecked_labelers.append(s.labeler)
                elif s.gold_agreement < min_gold_agreement:
                    dropped.add(s.labeler)
            summary.dropped_labelers.extend(sorted(dropped))
        for item, answers in rows:
            if item.is_gold:
                continue
            for a in answers:
                if a.labeler in dropped:
                    continue
                seconds = a.seconds_active if a.seconds_active is not None else a.seconds_wall
                meta = {**item.meta, "project": name, "item": item.id, "seconds": round(seconds, 3)}
                if item.context is not None:  # what the labeler saw beside the prompt (not model input)
                    meta["context"] = item.context
                recs = kind.to_records(item.prompt, list(item.responses), a.payload, a.labeler, meta)
                out.extend(recs)
                summary.answers += 1
                if not recs:
                    summary.no_judgment += 1
    summary.records = len(out)
    return out


EXPORT_FORMATS: tuple[str, ...] = ("records", "trl")


def export_file(store: Any, out: str | Path, project: str | None = None,
                min_gold_agreement: float | None = None, format: str = "records") -> ExportSummary:
    """Write the records (or, for `format="trl"`, TRL's preference rows: pairs, or the unpaired
    rows of binary feedback) to `out` (JSONL, or Parquet by suffix) atomically."""
    # imported here: formats loads torch, the server needs none
    from rlhfkit.feedback.formats import (
        preference_pairs,
        unpaired_rows,
        write_records,
        write_rows,
    )

    if format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    summary = ExportSummary()
    records = collect_records(store, project, min_gold_agreement, summary)
    if format == "records":
        summary.rows = write_records(out, records)
        return summary
    rows, summary.skipped = preference_pairs(records)
    summary.columns = "prompt/chosen/rejected"
    unpaired, skipped = unpaired_rows(records)
    if unpaired and rows:
        raise UserError(f"--format trl: {len(rows)} preference pairs (prompt/chosen/rejected) and {len(unpaired)} "
                        "binary feedback rows (prompt/completion/label) cannot share a file: export the "
                        "projects apart with --project")
    if unpaired:
        rows, summary.skipped, summary.columns = unpaired, skipped, "prompt/completion/label"
    _one_prompt_type(rows)
    summary.rows = write_rows(out, rows)
    return summary


def _one_prompt_type(rows: list[dict[str, Any]]) -> None:
    """`datasets.load_dataset("json")` gives a column one type: plain-text prompts and
    conversations cannot share a file (checked before writing, so nothing is written)."""
    n_chat = sum(isinstance(r["prompt"], list) for r in rows)
    if 0 < n_chat < len(rows):
        raise UserError(f"--format trl: {len(rows) - n_chat} rows have a plain-text prompt and {n_chat} a "
                        "conversation; TRL and datasets need one kind per file: export the projects "
                        "apart with --project, or use the default format")
