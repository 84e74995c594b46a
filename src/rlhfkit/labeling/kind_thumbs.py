"""The thumbs kind: one response, thumbs up or thumbs down (unpaired binary feedback, the data
KTO learns from; Ethayarajh et al. 2024, sec. 4). A labeler may also say "can't tell", which,
as in a pairwise project, is no judgment and becomes no record.

An import row is a prompt (text or a conversation) with `response`, or with K = 1..9
`responses`, which make K items (as a rating row does). An answer is
`{"thumb": "up" | "down" | "cant_tell"}`; a gold item's answer has the same shape. It exports
as a `Feedback(prompt, response, desirable=thumb == "up", labeler)` record, which
`rlhfkit kto --data` reads (and `label export --format trl` writes as TRL's unpaired rows
`{prompt, completion, label}`).
"""

from __future__ import annotations

from typing import Any, Hashable

from rlhfkit.feedback.records import Feedback, Prompt, Record, RecordError
from rlhfkit.labeling.forms import AnswerError
from rlhfkit.labeling.kind_base import Kind

THUMBS: tuple[str, ...] = ("up", "down", "cant_tell")


class ThumbsKind(Kind):
    """Thumbs up or down on one response; agreement is nominal (up / down), can't tell aside."""

    name, item_k, response_rows = "thumbs", (1, 1), True

    def split(self, k: int) -> list[tuple[int, ...]]:
        if not 1 <= k <= 9:
            raise RecordError("responses", f"a thumbs row needs 1..9 responses, got {k}")
        return [(i,) for i in range(k)]

    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        thumb = payload.get("thumb")
        if thumb not in THUMBS:
            raise AnswerError("thumb: expected up, down or cant_tell")
        return {"thumb": thumb}

    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        return {"thumb": form.get("thumb")}

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        """One unit, the thumb; "can't tell" gives none."""
        return [] if payload["thumb"] == "cant_tell" else [(None, payload["thumb"])]

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        return 1.0 if payload["thumb"] == gold["thumb"] else 0.0

    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        """A Feedback record, desirable when the thumb is up; "can't tell" becomes none."""
        if payload["thumb"] == "cant_tell":
            return []
        return [Feedback(prompt, responses[0], payload["thumb"] == "up", labeler=labeler, meta=meta)]
