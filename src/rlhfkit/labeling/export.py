"""`rlhfkit label export`: answers -> records (Ranking / Comparison / Rating JSONL) that
`rlhfkit rm --data` reads. Gold items are the researchers' checks and are left out;
labelers below an agreement-with-gold threshold can be dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.feedback.records import Record
from rlhfkit.labeling.kinds import to_records
from rlhfkit.labeling.quality import project_quality


@dataclass
class ExportSummary:
    records: int = 0
    answers: int = 0
    dropped_labelers: list[str] = field(default_factory=list)  # below the gold-agreement threshold
    unchecked_labelers: list[str] = field(default_factory=list)  # answered no gold item (kept)


def collect_records(store: Any, project: str | None = None, min_gold_agreement: float | None = None,
                    summary: ExportSummary | None = None) -> list[Record]:
    """Records from every project (or one), oldest item first."""
    summary = summary if summary is not None else ExportSummary()
    names = [project] if project is not None else [p.name for p in store.projects()]
    out: list[Record] = []
    for name in names:
        kind = store.project(name).kind
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
                out.extend(to_records(kind, item.prompt, list(item.responses), a.payload, a.labeler, meta))
                summary.answers += 1
    summary.records = len(out)
    return out


def export_file(store: Any, out: str | Path, project: str | None = None,
                min_gold_agreement: float | None = None) -> ExportSummary:
    """Write the records to `out` (JSONL, or Parquet by suffix) atomically."""
    from rlhfkit.feedback.formats import write_records  # imported here: it loads torch, the server needs none

    summary = ExportSummary()
    write_records(out, collect_records(store, project, min_gold_agreement, summary))
    return summary
