"""What every task kind object answers for (`Kind`), and the shape of an item to add
(`NewItem`). The kinds themselves are in kinds.py (KIND_OBJECTS), or in a module of their own
(kind_thumbs.py) that subclasses `Kind` from here, so that it imports no kinds.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

from rlhfkit.feedback.records import Prompt, Record, RecordError
from rlhfkit.labeling.forms import AnswerError, Field


@dataclass(frozen=True)
class NewItem:
    """An item to add. `media` holds (content_type, bytes) per response for clip items. The
    prompt is a string or a conversation (records.py: a list of messages, kept as Messages)."""

    prompt: Prompt
    responses: tuple[str, ...]
    policy: str | None = None
    gold: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    media: tuple[tuple[str, bytes], ...] = ()
    context: str | None = None  # shown to the labeler beside the prompt (demonstrations); not model input


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnswerError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise AnswerError(f"{name}: expected an integer, got {value!r}") from None


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


class Kind(ABC):
    """What every kind object answers for; the defaults suit a kind without the feature."""

    name: str = ""
    item_k: tuple[int, int] = (1, 1)  # responses an item shows
    alpha_metric: str = "nominal"  # Krippendorff's alpha metric of `judgments`
    gold_answers: bool = True  # whether an item may carry a researcher's answer
    no_gold_why: str = ""
    clips: bool = False  # import rows may give clips instead of texts (importing.py)
    response_rows: bool = False  # import rows may give one "response" instead of "responses"
    own_rows: bool = False  # import rows have a shape of their own: `item_from_row`
    drafts: bool = False  # the task page autosaves what the labeler is writing (taskpages.py)

    @property
    def template(self) -> str:
        """The task page (templates/); its form carries data-kind, which picks label.js's key bindings."""
        return f"task_{self.name}.html"

    def for_project(self, project: Any) -> "Kind":
        """The object for one project (a rating project's has its form)."""
        return self

    def describe(self) -> dict[str, Any] | None:
        """What API clients are told beside each item (a rating project's form)."""
        return None

    def split(self, k: int) -> list[tuple[int, ...]]:
        """Which responses of a K-response import row go into each item."""
        raise RecordError("responses", f"a {self.name} row has no responses")

    def item_from_row(self, row: dict[str, Any]) -> "NewItem":
        """An import row with no responses as one item; only kinds whose rows carry no responses
        (demonstrations) have one, the others are split from their responses (`split`)."""
        raise RecordError("responses", f"a {self.name} row needs responses")

    @abstractmethod
    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        """The answer, checked and normalized; AnswerError when it does not fit."""

    @abstractmethod
    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        """The task page's submitted fields as an answer payload (validate_answer checks it)."""

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        """The answer's agreement units: (sub-unit, value)."""
        return []

    @property
    def alpha_order(self) -> Sequence[Any] | None:
        """The values' order, for the ordinal metric."""
        return None

    def agreement_fields(self) -> list[Field]:
        """Fields whose agreement is reported one by one (a rating form's)."""
        return []

    def field_units(self, payload: dict[str, Any]) -> list[tuple[str, Hashable, Any]]:
        """(field, sub-unit, value) for each agreement unit of `agreement_fields`."""
        return []

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        raise AnswerError(f"a {self.name} item has no gold answer ({self.no_gold_why})")

    @abstractmethod
    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        """The answer as the records export writes."""
