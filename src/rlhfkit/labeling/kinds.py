"""What each task kind means, one object per kind (KIND_OBJECTS): the shape of an item and of
an answer, the task page, how answers compare (agreement, gold) and which records they become
on export. Adding a kind is one object (a `Kind`, kind_base.py) registered in KIND_OBJECTS, its
template `task_<name>.html` and its key bindings (label.js, the handler of that name). Most
kinds are here; one in a module of its own (kind_thumbs.py) subclasses kind_base's `Kind`.

Answers (normalized payloads):
  ranking   {"ranks": [r_0, ..., r_{K-1}]}  dense ranks per shown response, 0 = best, equal = tie
  pairwise  {"choice": "A" | "B" | "tie" | "cant_tell"}
  rating    the project's form's fields by name (forms.py); the default, InstructGPT's form:
            {"score": 1..7, "flags": [RATING_FLAGS...], "notes": str}
  demonstration  {"text": str}     the response the labeler wrote (at least the project's min_chars)
  thumbs    {"thumb": "up" | "down" | "cant_tell"}   one response, unpaired binary feedback (KTO)
A gold item's researcher answer has the same shape (demonstrations have none: admins rate them).

The module functions (`validate_answer`, `judgments`, `gold_agreement`, `to_records`, ...)
take a kind's name or its object and ask the object; `kind_of(project)` is a project's object
(a rating project's carries the project's form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Hashable, Sequence

from rlhfkit.feedback.records import (
    Comparison,
    Demonstration,
    Prompt,
    Ranking,
    Rating,
    Record,
    RecordError,
    parse_prompt,
)
from rlhfkit.labeling.forms import (  # noqa: F401
    INSTRUCTGPT,
    MAX_NOTES,
    AnswerError,
    Field,
    Form,
    stored_form,
)
from rlhfkit.labeling.kind_base import Kind, NewItem, _int, _sign  # noqa: F401  (NewItem: imported from here)
from rlhfkit.labeling.kind_thumbs import ThumbsKind

PAIRWISE_CHOICES: tuple[str, ...] = ("A", "B", "tie", "cant_tell")
DEFAULT_MAX_CHARS = 20_000  # per prompt (a conversation's messages together) or response


# ---------------------------------------------------------------- the kind objects

class RankingKind(Kind):
    """K = 2..9 responses ordered best to worst, ties allowed (InstructGPT, Ouyang et al. 2022, sec. 3.5)."""

    name, item_k = "ranking", (2, 9)

    def split(self, k: int) -> list[tuple[int, ...]]:
        if not 2 <= k <= 9:
            raise RecordError("responses", f"a ranking needs K = 2..9 responses, got {k}")
        return [tuple(range(k))]

    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        ranks = payload.get("ranks")
        if not isinstance(ranks, (list, tuple)) or len(ranks) != k:
            raise AnswerError(f"ranks: expected one rank per response ({k})")
        values = [_int(r, f"ranks[{i}]") for i, r in enumerate(ranks)]
        if any(not 0 <= v < k for v in values):
            raise AnswerError(f"ranks: each rank must be between 0 (best) and {k - 1}")
        dense = {v: i for i, v in enumerate(sorted(set(values)))}  # ties allowed; gaps closed
        return {"ranks": [dense[v] for v in values]}

    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        ranks = []  # the page numbers ranks from 1 (best)
        for i in range(k):
            v = form.get(f"rank_{i}", "")
            if not str(v).isdigit():
                raise AnswerError("give every response a rank")
            ranks.append(int(v) - 1)
        return {"ranks": ranks}

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        """One ordered pair per response pair: -1 first better, 0 tie, 1 second better."""
        r = payload["ranks"]
        return [((i, j), _sign(r[i] - r[j])) for i, j in combinations(range(len(r)), 2)]

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        """The share of response pairs ordered alike."""
        mine, theirs = dict(self.judgments(payload)), dict(self.judgments(gold))
        return sum(mine[u] == v for u, v in theirs.items()) / len(theirs)

    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        order = sorted(range(len(responses)), key=lambda i: payload["ranks"][i])
        return [Ranking(prompt, tuple(responses[i] for i in order), labeler=labeler,
                        ranks=tuple(payload["ranks"][i] for i in order), meta=meta)]


class PairwiseKind(Kind):
    """Two responses (texts or clips): A, B, a tie, or "can't tell" (Christiano et al. 2017)."""

    name, item_k, clips = "pairwise", (2, 2), True

    def split(self, k: int) -> list[tuple[int, ...]]:
        if not 2 <= k <= 9:
            raise RecordError("responses", f"a pairwise row needs 2..9 responses (pairs are made of them), got {k}")
        return list(combinations(range(k), 2))

    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        choice = payload.get("choice")
        if choice not in PAIRWISE_CHOICES:
            raise AnswerError(f"choice: expected one of {', '.join(PAIRWISE_CHOICES)}")
        return {"choice": choice}

    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        return {"choice": form.get("choice")}

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        """"Can't tell" gives none."""
        return [] if payload["choice"] == "cant_tell" else [(None, payload["choice"])]

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        return 1.0 if payload["choice"] == gold["choice"] else 0.0

    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        """"Can't tell" becomes no record: it says nothing about which is better (Christiano
        et al. 2017, sec. 2.2.3 drop incomparable pairs)."""
        a, b = responses
        choice = payload["choice"]
        if choice == "cant_tell":
            return []
        chosen, rejected = (b, a) if choice == "B" else (a, b)
        return [Comparison(prompt, chosen, rejected, tie=choice == "tie", labeler=labeler, meta=meta)]


_RECORD_FIELDS = ("score", "flags", "notes")  # a form's fields the Rating record has fields for


@dataclass(frozen=True)
class RatingKind(Kind):
    """One response, judged on the project's form (forms.py; by default InstructGPT's: overall
    quality 1-7, metadata flags, notes). A K-response import row makes K items."""

    form: Form = INSTRUCTGPT
    name = "rating"
    response_rows = True

    def for_project(self, project: Any) -> "RatingKind":
        form = getattr(project, "form", None)
        return self if form is None else RatingKind(stored_form(form, f"project {project.name!r}"))

    def describe(self) -> dict[str, Any] | None:
        return {"form": self.form.to_json()}

    @property
    def gold_answers(self) -> bool:  # type: ignore[override]
        return bool(self.form.gold_fields())

    @property
    def no_gold_why(self) -> str:  # type: ignore[override]
        return f"the {self.form.name} form has no likert or choice field to check against"

    def _headline(self) -> Field | None:
        """The field the project's one alpha is about: `score`, else the first likert or choice field."""
        return self.form.field("score") or next(iter(self.form.gold_fields()), None)

    @property
    def alpha_metric(self) -> str:  # type: ignore[override]
        head = self._headline()
        return head.metric if head is not None and head.metric else "nominal"

    @property
    def alpha_order(self) -> Sequence[Any] | None:
        head = self._headline()
        return head.order() if head is not None else None

    def split(self, k: int) -> list[tuple[int, ...]]:
        if not 1 <= k <= 9:
            raise RecordError("responses", f"a rating row needs 1..9 responses, got {k}")
        return [(i,) for i in range(k)]

    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        return self.form.validate_answer(payload)

    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        return self.form.form_answer(form)

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        head = self._headline()
        return head.units(payload.get(head.name)) if head is not None else []

    def agreement_fields(self) -> list[Field]:
        return [f for f in self.form.fields if f.metric is not None]

    def field_units(self, payload: dict[str, Any]) -> list[tuple[str, Hashable, Any]]:
        return self.form.units(payload)

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        """The share of the gold's likert and choice values matched (a 1-7 score within one point)."""
        return self.form.gold_agreement(payload, gold)

    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        """A Rating: the form's `score`, `flags` and `notes` as the record's own, the rest in `answers`."""
        has = {f.name for f in self.form.fields}
        answers = {k: v for k, v in payload.items() if k not in _RECORD_FIELDS}
        return [Rating(prompt, responses[0], payload["score"] if "score" in has else None,
                       flags=tuple(payload.get("flags", ())), notes=payload.get("notes", ""), labeler=labeler,
                       meta=meta, answers=answers)]


# ---------------------------------------------------------------- by name or object

def kind_object(kind: "str | Kind") -> Kind:
    """The object of a kind given by name (a rating's with the default form) or as an object."""
    if isinstance(kind, Kind):
        return kind
    if kind not in KIND_OBJECTS:
        raise RecordError("kind", f"unknown task kind {kind!r}; known: {', '.join(KIND_OBJECTS)}")
    return KIND_OBJECTS[kind]


def kind_of(project: Any) -> Kind:
    """A project's kind object (a `ProjectInfo`: its kind, and for a rating project its form)."""
    return kind_object(project.kind).for_project(project)


def validate_new_item(kind: "str | Kind", item: NewItem, max_chars: int = DEFAULT_MAX_CHARS) -> NewItem:
    """Check an item against its kind; raise RecordError naming the field. Returns it with the
    prompt (a conversation as Messages) and the gold answer normalized."""
    obj = kind_object(kind)
    lo, hi = obj.item_k
    k = len(item.responses)
    if not lo <= k <= hi:
        want = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise RecordError("responses", f"a {obj.name} item needs {want} responses, got {k}")
    prompt = parse_prompt(item.prompt)
    size = len(prompt) if isinstance(prompt, str) else sum(len(m.content) for m in prompt)
    if size > max_chars:
        raise RecordError("prompt", f"too long: {size} characters (the limit is {max_chars})")
    for i, text in enumerate(item.responses):
        if not isinstance(text, str):
            raise RecordError(f"responses[{i}]", f"expected a string, got {type(text).__name__}")
        if len(text) > max_chars:
            raise RecordError(f"responses[{i}]", f"too long: {len(text)} characters (the limit is {max_chars})")
    if item.media and len(item.media) != k:
        raise RecordError("clips", f"expected one clip per response ({k}), got {len(item.media)}")
    if item.context is not None:
        if not isinstance(item.context, str):
            raise RecordError("context", f"expected a string, got {type(item.context).__name__}")
        if len(item.context) > max_chars:
            raise RecordError("context", f"too long: {len(item.context)} characters (the limit is {max_chars})")
    gold = item.gold
    if gold is not None and not obj.gold_answers:
        raise RecordError("gold", f"a {obj.name} item has no gold answer ({obj.no_gold_why})")
    if gold is not None:
        try:
            gold = validate_answer(obj, k, gold)
        except AnswerError as e:
            raise RecordError("gold", str(e)) from None
    return NewItem(prompt, tuple(item.responses), item.policy, gold, dict(item.meta), item.media, item.context)


def validate_answer(kind: "str | Kind", k: int, payload: Any, min_chars: int = 0) -> dict[str, Any]:
    """Normalize an answer to an item with `k` responses, or raise AnswerError. `min_chars`:
    the project's shortest demonstration."""
    if not isinstance(payload, dict):
        raise AnswerError("an answer is a JSON object")
    try:
        obj = kind_object(kind)
    except RecordError:
        raise AnswerError(f"unknown task kind {kind!r}") from None
    return obj.validate_answer(k, payload, min_chars)


def judgments(kind: "str | Kind", payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
    """The comparable judgments in an answer, keyed by sub-unit: a ranking gives one ordered
    pair per response pair (-1 first better, 0 tie, 1 second better); "can't tell" gives none."""
    return kind_object(kind).judgments(payload)


def gold_agreement(kind: "str | Kind", payload: dict[str, Any], gold: dict[str, Any]) -> float:
    """How far an answer agrees with the researcher's, in [0, 1]: the share of response pairs
    ordered alike (ranking), the same choice (pairwise), a score within one point (rating)."""
    return kind_object(kind).gold_agreement(payload, gold)


def to_records(kind: "str | Kind", prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
               meta: dict[str, Any]) -> list[Record]:
    """The training records an answer becomes."""
    return kind_object(kind).to_records(prompt, responses, payload, labeler, meta)


# ---------------------------------------------------------------- demonstrations

_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_DEMO_ROW_KEYS = ("prompt", "context", "meta")


def demonstration_text(text: str) -> str:
    """A written response as stored: newlines as \\n (a browser sends \\r\\n), leading blank lines
    and trailing whitespace cut (a first line's indentation kept). Its length is what
    `min_chars` counts, and what the page's counter shows."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


@dataclass(frozen=True)
class DemonstrationKind(Kind):
    """InstructGPT's step 1 (Ouyang et al. 2022, sec. 3.4): a labeler reads a prompt (and,
    optionally, context shown to them alone) and writes the response the model should give.
    An item has no responses; an answer is `{"text": ...}` of at least the project's
    `min_chars`; it exports as a `Demonstration` that `rlhfkit sft --data` trains on. Free
    text has no agreement units and no gold answer: admins rate demonstrations 1-7 instead
    (the screening's "demonstration score", quality.demonstration_scores)."""

    name: str = "demonstration"
    item_k: tuple[int, int] = (0, 0)  # responses an item shows
    alpha_metric: str = "nominal"  # unused: a demonstration gives no agreement units
    gold_answers: bool = False
    no_gold_why: str = "admins rate written demonstrations 1-7 instead"
    max_chars: int = DEFAULT_MAX_CHARS
    own_rows = True  # {"prompt", "context"} rows: item_from_row
    drafts = True

    def item_from_row(self, row: dict[str, Any]) -> NewItem:
        """An import row `{"prompt": str | messages, "context": str (optional), "meta": {...}}`."""
        extra = sorted(k for k in row if k not in _DEMO_ROW_KEYS)
        if extra:
            why = ("the labeler writes the response" if extra[0] in ("response", "responses", "completion", "clips")
                   else "admins rate demonstrations instead" if extra[0] == "gold" else "")
            raise RecordError(extra[0], f"not a field of a demonstration row ({', '.join(_DEMO_ROW_KEYS)})"
                              + (f": {why}" if why else ""))
        if "prompt" not in row:
            raise RecordError("prompt", "missing (a demonstration row needs the prompt to answer)")
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            raise RecordError("meta", "expected a JSON object")
        return NewItem(parse_prompt(row["prompt"]), (), meta=dict(meta), context=row.get("context"))

    def validate_answer(self, k: int, payload: dict[str, Any], min_chars: int = 0) -> dict[str, Any]:
        text = payload.get("text")
        if not isinstance(text, str):
            raise AnswerError("text: expected the response you wrote, as text")
        text = demonstration_text(text)
        if not text:
            raise AnswerError("text: write the response first")
        if len(text) < min_chars:
            raise AnswerError(f"text: at least {min_chars} characters, please (this has {len(text)})")
        if len(text) > self.max_chars:
            raise AnswerError(f"text: at most {self.max_chars} characters (this has {len(text)})")
        return {"text": text}

    def form_answer(self, k: int, form: Any) -> dict[str, Any]:
        return {"text": form.get("text", "")}

    def judgments(self, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
        return []

    def gold_agreement(self, payload: dict[str, Any], gold: dict[str, Any]) -> float:
        raise AnswerError(f"a demonstration has no gold answer ({self.no_gold_why})")

    def to_records(self, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
                   meta: dict[str, Any]) -> list[Record]:
        return [Demonstration(prompt, payload["text"], labeler=labeler, meta=meta)]


DEMONSTRATION = DemonstrationKind()
KIND_OBJECTS: dict[str, Kind] = {k.name: k for k in (RankingKind(), PairwiseKind(), RatingKind(), DEMONSTRATION,
                                                    ThumbsKind())}
# Responses per item and Krippendorff's alpha metric, by kind name (a rating's by its default form).
ITEM_K: dict[str, tuple[int, int]] = {n: k.item_k for n, k in KIND_OBJECTS.items()}
ALPHA_METRIC: dict[str, str] = {n: k.alpha_metric for n, k in KIND_OBJECTS.items()}
