"""What each task kind means: the shape of an item, of an answer, how answers compare
(for agreement) and which records they become on export. One home per kind.

Answers (normalized payloads):
  ranking   {"ranks": [r_0, ..., r_{K-1}]}  dense ranks per shown response, 0 = best, equal = tie
  pairwise  {"choice": "A" | "B" | "tie" | "cant_tell"}
  rating    {"score": 1..7, "flags": [RATING_FLAGS...], "notes": str}
  demonstration  {"text": str}     the response the labeler wrote (at least the project's min_chars)
A gold item's researcher answer has the same shape (demonstrations have none: admins rate them).

Ranking, pairwise and rating are spread over the functions below; a kind added since is one
object (`DemonstrationKind`) registered in KIND_OBJECTS, to which those functions hand its calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Hashable

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import (
    RATING_FLAGS,
    Comparison,
    Demonstration,
    Prompt,
    Ranking,
    Rating,
    Record,
    RecordError,
    parse_prompt,
)

PAIRWISE_CHOICES: tuple[str, ...] = ("A", "B", "tie", "cant_tell")
# Responses per item, by kind (an imported row may be split into several items: see importing.py).
ITEM_K: dict[str, tuple[int, int]] = {"ranking": (2, 9), "pairwise": (2, 2), "rating": (1, 1)}
# Krippendorff's alpha metric for each kind's judgments.
ALPHA_METRIC: dict[str, str] = {"ranking": "nominal", "pairwise": "nominal", "rating": "interval"}
MAX_NOTES = 5000
DEFAULT_MAX_CHARS = 20_000  # per prompt (a conversation's messages together) or response


class AnswerError(UserError, ValueError):
    """An answer that does not fit its item (the web app answers 400 with this message)."""


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


def validate_new_item(kind: str, item: NewItem, max_chars: int = DEFAULT_MAX_CHARS) -> NewItem:
    """Check an item against its kind; raise RecordError naming the field. Returns it with the
    prompt (a conversation as Messages) and the gold answer normalized."""
    if kind not in ITEM_K:
        raise RecordError("kind", f"unknown task kind {kind!r}; known: {', '.join(ITEM_K)}")
    lo, hi = ITEM_K[kind]
    k = len(item.responses)
    if not lo <= k <= hi:
        want = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise RecordError("responses", f"a {kind} item needs {want} responses, got {k}")
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
    if gold is not None and kind in KIND_OBJECTS and not KIND_OBJECTS[kind].gold_answers:
        raise RecordError("gold", f"a {kind} item has no gold answer ({KIND_OBJECTS[kind].no_gold_why})")
    if gold is not None:
        try:
            gold = validate_answer(kind, k, gold)
        except AnswerError as e:
            raise RecordError("gold", str(e)) from None
    return NewItem(prompt, tuple(item.responses), item.policy, gold, dict(item.meta), item.media, item.context)


# ---------------------------------------------------------------- answers

def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnswerError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise AnswerError(f"{name}: expected an integer, got {value!r}") from None


def validate_answer(kind: str, k: int, payload: Any, min_chars: int = 0) -> dict[str, Any]:
    """Normalize an answer to an item with `k` responses, or raise AnswerError. `min_chars`:
    the project's shortest demonstration."""
    if not isinstance(payload, dict):
        raise AnswerError("an answer is a JSON object")
    if kind in KIND_OBJECTS:
        return KIND_OBJECTS[kind].validate_answer(k, payload, min_chars)
    if kind == "ranking":
        ranks = payload.get("ranks")
        if not isinstance(ranks, (list, tuple)) or len(ranks) != k:
            raise AnswerError(f"ranks: expected one rank per response ({k})")
        values = [_int(r, f"ranks[{i}]") for i, r in enumerate(ranks)]
        if any(not 0 <= v < k for v in values):
            raise AnswerError(f"ranks: each rank must be between 0 (best) and {k - 1}")
        dense = {v: i for i, v in enumerate(sorted(set(values)))}  # ties allowed; gaps closed
        return {"ranks": [dense[v] for v in values]}
    if kind == "pairwise":
        choice = payload.get("choice")
        if choice not in PAIRWISE_CHOICES:
            raise AnswerError(f"choice: expected one of {', '.join(PAIRWISE_CHOICES)}")
        return {"choice": choice}
    if kind == "rating":
        score = _int(payload.get("score"), "score")
        if not 1 <= score <= 7:
            raise AnswerError("score: must be on the 1-7 Likert scale")
        flags = payload.get("flags", [])
        if not isinstance(flags, (list, tuple)) or any(f not in RATING_FLAGS for f in flags):
            raise AnswerError(f"flags: expected a list drawn from {', '.join(RATING_FLAGS)}")
        notes = payload.get("notes", "")
        if not isinstance(notes, str) or len(notes) > MAX_NOTES:
            raise AnswerError(f"notes: expected text of at most {MAX_NOTES} characters")
        return {"score": score, "flags": [f for f in RATING_FLAGS if f in flags], "notes": notes}
    raise AnswerError(f"unknown task kind {kind!r}")


# ---------------------------------------------------------------- agreement units

def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def judgments(kind: str, payload: dict[str, Any]) -> list[tuple[Hashable, Any]]:
    """The comparable judgments in an answer, keyed by sub-unit: a ranking gives one ordered
    pair per response pair (-1 first better, 0 tie, 1 second better); "can't tell" gives none."""
    if kind in KIND_OBJECTS:
        return KIND_OBJECTS[kind].judgments(payload)
    if kind == "ranking":
        r = payload["ranks"]
        return [((i, j), _sign(r[i] - r[j])) for i, j in combinations(range(len(r)), 2)]
    if kind == "pairwise":
        return [] if payload["choice"] == "cant_tell" else [(None, payload["choice"])]
    return [(None, payload["score"])]


def gold_agreement(kind: str, payload: dict[str, Any], gold: dict[str, Any]) -> float:
    """How far an answer agrees with the researcher's, in [0, 1]: the share of response pairs
    ordered alike (ranking), the same choice (pairwise), a score within one point (rating)."""
    if kind in KIND_OBJECTS:
        return KIND_OBJECTS[kind].gold_agreement(payload, gold)
    if kind == "rating":
        return 1.0 if abs(payload["score"] - gold["score"]) <= 1 else 0.0
    if kind == "pairwise":
        return 1.0 if payload["choice"] == gold["choice"] else 0.0
    mine, theirs = dict(judgments(kind, payload)), dict(judgments(kind, gold))
    return sum(mine[u] == v for u, v in theirs.items()) / len(theirs)


# ---------------------------------------------------------------- records

def to_records(kind: str, prompt: Prompt, responses: list[str], payload: dict[str, Any], labeler: str,
               meta: dict[str, Any]) -> list[Record]:
    """The training records an answer becomes. Pairwise "can't tell" becomes none: it says
    nothing about which is better (Christiano et al. 2017, sec. 2.2.3 drop incomparable pairs)."""
    if kind in KIND_OBJECTS:
        return KIND_OBJECTS[kind].to_records(prompt, responses, payload, labeler, meta)
    if kind == "ranking":
        order = sorted(range(len(responses)), key=lambda i: payload["ranks"][i])
        return [Ranking(prompt, tuple(responses[i] for i in order), labeler=labeler,
                        ranks=tuple(payload["ranks"][i] for i in order), meta=meta)]
    if kind == "pairwise":
        a, b = responses
        choice = payload["choice"]
        if choice == "cant_tell":
            return []
        chosen, rejected = (b, a) if choice == "B" else (a, b)
        return [Comparison(prompt, chosen, rejected, tie=choice == "tie", labeler=labeler, meta=meta)]
    notes = payload.get("notes", "")
    return [Rating(prompt, responses[0], payload["score"], flags=tuple(payload["flags"]), notes=notes,
                   labeler=labeler, meta=meta)]


# ---------------------------------------------------------------- kinds as objects

_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")
_DEMO_ROW_KEYS = ("prompt", "context", "meta")


def demonstration_text(text: str) -> str:
    """A written response as stored: newlines as \\n (a browser sends \\r\\n), leading blank lines
    and trailing whitespace cut (a first line's indentation kept). Its length is what
    `min_chars` counts, and what the page's counter shows."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


@dataclass(frozen=True)
class DemonstrationKind:
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
KIND_OBJECTS: dict[str, DemonstrationKind] = {DEMONSTRATION.name: DEMONSTRATION}
for _kind in KIND_OBJECTS.values():
    ITEM_K[_kind.name] = _kind.item_k
    ALPHA_METRIC[_kind.name] = _kind.alpha_metric
