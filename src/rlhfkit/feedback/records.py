"""Records of human (or simulated) judgment: what every learner from feedback reads.

- `Demonstration(prompt, response, labeler)`: what a labeler would write (SFT data).
- `Comparison(prompt, chosen, rejected, tie, weight, labeler)`: one pairwise judgment.
- `Ranking(prompt, responses best-to-worst, labeler)`: K responses ordered; it expands
  to its C(K, 2) comparisons, each weighted 1/C(K, 2) so that every ranking counts
  once (InstructGPT, Ouyang et al. 2022, sec. 3.5).
- `Rating(prompt, response, score 1-7, flags, notes, labeler, answers)`: a Likert judgment
  with the InstructGPT metadata flags, and a rating form's other answers by field name.
- `Completions(prompt, responses)`: K unjudged samples from a policy (what labelers see).

A prompt is a string, or a conversation: a tuple of `Message(role, content)` (roles system,
user, assistant, tool), non-empty and not ending in an assistant turn, given as a list of
`{"role", "content"}` dicts or of Messages. Records keep conversations as messages so that a
model's chat template can render them (`lm/chat.py`); `prompt_text` renders one as the
Anthropic HH-style transcript a model without a template reads, and `as_messages` gives the
messages of any prompt (a string is one user turn).

Records validate themselves on construction and raise `RecordError` naming the field
(`prompt[2].content`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from itertools import combinations
from math import comb
from typing import Any, ClassVar, Sequence, Union

from rlhfkit.errors import UserError

# The metadata flags of InstructGPT's labeling interface (Ouyang et al. 2022, appendix B).
RATING_FLAGS: tuple[str, ...] = (
    "fails_to_follow_instruction",
    "inappropriate_for_customer_assistant",
    "sexual_content",
    "violent_content",
    "encourages_violence_abuse_terrorism_self_harm",
    "denigrates_protected_class",
    "harmful_advice",
    "moral_judgment",
)


class RecordError(UserError, ValueError):
    """A record with a missing or invalid field; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field '{field_name}': {message}")
        self.field = field_name
        self.message = message


# ---------------------------------------------------------------- prompts and messages

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
# The Anthropic HH transcript markers (Bai et al. 2022): the plain-text rendering of a conversation.
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TRANSCRIPT_ROLE = {"user": HUMAN, "assistant": ASSISTANT, "system": "System:", "tool": "tool:"}


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str
    content: str

    def __post_init__(self) -> None:
        _check_message(self.role, self.content, "message")


def _check_message(role: Any, content: Any, name: str) -> None:
    if role not in ROLES:
        raise RecordError(f"{name}.role", f"expected one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise RecordError(f"{name}.content", f"expected a string, got {type(content).__name__}")


# A record's prompt: plain text, or a conversation (see the module docstring).
Prompt = Union[str, tuple[Message, ...]]


def parse_messages(value: Any, name: str) -> tuple[Message, ...]:
    """A list of `{"role", "content"}` dicts (or Messages) -> Messages; RecordError names
    `name[i]`. Other keys are refused unless null (a table row's struct has every key)."""
    if not isinstance(value, (list, tuple)):
        raise RecordError(name, f"expected a list of chat messages, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, dict):
            raise RecordError(where, f"expected {{\"role\": str, \"content\": str}}, got {type(m).__name__}")
        extra = sorted(k for k, v in m.items() if k not in ("role", "content") and v is not None)
        if extra:
            raise RecordError(where, f"unknown key {extra[0]!r}; a message is {{\"role\": str, \"content\": str}}")
        for k in ("role", "content"):
            if k not in m:
                raise RecordError(f"{where}.{k}", "missing")
        _check_message(m["role"], m["content"], where)
        out.append(Message(m["role"], m["content"]))
    return tuple(out)


def parse_prompt(value: Any, name: str = "prompt") -> Prompt:
    """A string, or a conversation given as a list of messages -> a Prompt; RecordError otherwise."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (list, tuple)):
        raise RecordError(name, f"expected a string or a list of chat messages, got {type(value).__name__}")
    messages = parse_messages(value, name)
    if not messages:
        raise RecordError(name, "a conversation needs at least one message")
    if messages[-1].role == "assistant":
        raise RecordError(f"{name}[{len(messages) - 1}]", "a prompt must not end with an assistant turn "
                          "(the assistant's reply is the response)")
    return messages


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt as chat messages: a string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m.role, "content": m.content} for m in prompt]


def render_transcript(messages: Sequence[Message]) -> str:
    """Messages as an HH-style transcript: `\n\nHuman: ...\n\nAssistant: ...` (system and
    tool turns as `System: ...` and `tool: ...`)."""
    return "".join(f"{_TRANSCRIPT_ROLE[m.role]} {m.content}" for m in messages)


def prompt_text(prompt: Prompt) -> str:
    """The prompt as plain text: a string as it is; a conversation as its HH-style transcript
    ending in `\n\nAssistant:`, where the reply follows (what a model without a chat template reads)."""
    if isinstance(prompt, str):
        return prompt
    return render_transcript(prompt) + ASSISTANT


def _need_str(name: str, value: Any, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise RecordError(name, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(name, "must not be empty")


def _need_prompt(record: Any) -> None:
    object.__setattr__(record, "prompt", parse_prompt(record.prompt))


def _need_opt_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise RecordError(name, f"expected a string or null, got {type(value).__name__}")


@dataclass(frozen=True)
class Demonstration:
    kind: ClassVar[str] = "demonstration"
    prompt: Prompt
    response: str
    labeler: str | None = None  # who wrote it (the labeling app's export); None for other sources
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_prompt(self)
        _need_str("response", self.response, allow_empty=False)
        _need_opt_str("labeler", self.labeler)


@dataclass(frozen=True)
class Comparison:
    kind: ClassVar[str] = "comparison"
    prompt: Prompt
    chosen: str
    rejected: str
    tie: bool = False
    weight: float = 1.0
    labeler: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_prompt(self)
        _need_str("chosen", self.chosen)
        _need_str("rejected", self.rejected)
        if not isinstance(self.tie, bool):
            raise RecordError("tie", f"expected true/false, got {self.tie!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight > 0:
            raise RecordError("weight", f"expected a positive number, got {self.weight!r}")
        _need_opt_str("labeler", self.labeler)

    @property
    def target(self) -> float:
        """mu in the Bradley-Terry cross-entropy: 1 for chosen > rejected, 0.5 for a tie."""
        return 0.5 if self.tie else 1.0


@dataclass(frozen=True)
class Ranking:
    kind: ClassVar[str] = "ranking"
    prompt: Prompt
    responses: tuple[str, ...]
    labeler: str | None = None
    ranks: tuple[int, ...] | None = None  # rank per response (0 = best); equal ranks are ties
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_prompt(self)
        if not isinstance(self.responses, (list, tuple)):
            raise RecordError("responses", f"expected a list of strings, got {type(self.responses).__name__}")
        object.__setattr__(self, "responses", tuple(self.responses))
        if len(self.responses) < 2:
            raise RecordError("responses", f"a ranking needs at least 2 responses, got {len(self.responses)}")
        for i, r in enumerate(self.responses):
            _need_str(f"responses[{i}]", r)
        _need_opt_str("labeler", self.labeler)
        if self.ranks is not None:
            if not isinstance(self.ranks, (list, tuple)):
                raise RecordError("ranks", f"expected a list of integers, got {type(self.ranks).__name__}")
            ranks = tuple(self.ranks)
            if len(ranks) != len(self.responses) or any(isinstance(r, bool) or not isinstance(r, int) for r in ranks):
                raise RecordError("ranks", "expected one integer rank per response")
            if list(ranks) != sorted(ranks):
                raise RecordError("ranks", "responses are listed best to worst, so ranks must not decrease")
            object.__setattr__(self, "ranks", ranks)

    def to_comparisons(self) -> list[Comparison]:
        """All C(K, 2) pairs, each with weight 1/C(K, 2); equal ranks become ties."""
        k = len(self.responses)
        weight = 1.0 / comb(k, 2)
        ranks = self.ranks or tuple(range(k))
        return [
            Comparison(self.prompt, self.responses[i], self.responses[j], tie=ranks[i] == ranks[j],
                       weight=weight, labeler=self.labeler, meta=self.meta)
            for i, j in combinations(range(k), 2)
        ]


@dataclass(frozen=True)
class Rating:
    """`score` is the 1-7 overall judgment (None for a form without one: the labeling app's
    rating forms, labeling/forms.py); `answers` holds a form's other fields by name."""

    kind: ClassVar[str] = "rating"
    prompt: Prompt
    response: str
    score: int | None
    flags: tuple[str, ...] = ()
    notes: str = ""
    labeler: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    answers: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _need_prompt(self)
        _need_str("response", self.response)
        if self.answers is None:  # a Parquet row of a rating without answers
            object.__setattr__(self, "answers", {})
        if not isinstance(self.answers, dict) or not all(isinstance(k, str) for k in self.answers):
            raise RecordError("answers", "expected an object of answers by field name")
        if self.score is None and not self.answers:
            raise RecordError("score", "missing (a rating needs a 1-7 score, or its form's answers)")
        if self.score is not None and (isinstance(self.score, bool) or not isinstance(self.score, int)):
            raise RecordError("score", f"expected an integer 1-7, got {self.score!r}")
        if self.score is not None and not 1 <= self.score <= 7:
            raise RecordError("score", f"must be on the 1-7 Likert scale, got {self.score}")
        if not isinstance(self.flags, (list, tuple)):
            raise RecordError("flags", "expected a list of flag names")
        object.__setattr__(self, "flags", tuple(self.flags))
        for f in self.flags:
            if f not in RATING_FLAGS:
                raise RecordError("flags", f"unknown flag {f!r}; known: {', '.join(RATING_FLAGS)}")
        _need_str("notes", self.notes)
        _need_opt_str("labeler", self.labeler)


@dataclass(frozen=True)
class Feedback:
    """Unpaired binary feedback on one response: thumbs up (`desirable`) or down. KTO's data
    (Ethayarajh et al. 2024); TRL's unpaired rows {prompt, completion, label} read as these."""

    kind: ClassVar[str] = "feedback"
    prompt: Prompt
    response: str
    desirable: bool
    labeler: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_prompt(self)
        _need_str("response", self.response)
        if not isinstance(self.desirable, bool):
            raise RecordError("desirable", f"expected true/false, got {self.desirable!r}")
        _need_opt_str("labeler", self.labeler)


@dataclass(frozen=True)
class Completions:
    kind: ClassVar[str] = "completions"
    prompt: Prompt
    responses: tuple[str, ...]
    policy: str | None = None

    def __post_init__(self) -> None:
        _need_prompt(self)
        if not isinstance(self.responses, (list, tuple)) or len(self.responses) < 1:
            raise RecordError("responses", "expected a non-empty list of strings")
        object.__setattr__(self, "responses", tuple(self.responses))
        for i, r in enumerate(self.responses):
            _need_str(f"responses[{i}]", r)
        _need_opt_str("policy", self.policy)


Record = Union[Demonstration, Comparison, Ranking, Rating, Feedback, Completions]
RECORD_TYPES: dict[str, type] = {c.kind: c for c in (Demonstration, Comparison, Ranking, Rating, Feedback,
                                                     Completions)}


def record_to_dict(record: Record) -> dict[str, Any]:
    """A record as our JSONL row; a conversational prompt as a list of {"role", "content"}."""
    d = asdict(record)
    if not isinstance(record.prompt, str):
        d["prompt"] = as_messages(record.prompt)
    for k in ("responses", "flags", "ranks"):
        if isinstance(d.get(k), tuple):
            d[k] = list(d[k])
    if not d.get("meta"):
        d.pop("meta", None)
    if d.get("ranks") is None:
        d.pop("ranks", None)
    if isinstance(record, Rating) and not record.answers:
        d.pop("answers")  # a rating without a form's extra fields stays as it always was
    if isinstance(record, (Demonstration, Feedback)) and record.labeler is None:
        d.pop("labeler")  # plain SFT rows stay {prompt, response}
    return {"type": record.kind, **d}


def expand_to_comparisons(records: list[Record]) -> list[Comparison]:
    """Comparisons from comparisons and rankings (ratings and demonstrations are skipped)."""
    out: list[Comparison] = []
    for r in records:
        if isinstance(r, Comparison):
            out.append(r)
        elif isinstance(r, Ranking):
            out.extend(r.to_comparisons())
    return out


def to_feedback(records: list[Record], threshold: int = 5) -> list[Feedback]:
    """Binary feedback from any judgments, for KTO (Ethayarajh et al. 2024, sec. 4):
    feedback records pass through; a rating is desirable when its score is at least `threshold`
    (a rating without a score is skipped); a comparison gives a desirable record for the chosen
    response and an undesirable one for the rejected (ties give none); a ranking gives its best
    response as desirable and its worst as undesirable (when they are not tied), so a K-way
    ranking adds two records, not 2 C(K, 2)."""
    out: list[Feedback] = []
    for r in records:
        if isinstance(r, Feedback):
            out.append(r)
        elif isinstance(r, Rating) and r.score is not None:
            out.append(Feedback(r.prompt, r.response, r.score >= threshold, r.labeler, r.meta))
        elif isinstance(r, Comparison) and not r.tie:
            out += [Feedback(r.prompt, r.chosen, True, r.labeler, r.meta),
                    Feedback(r.prompt, r.rejected, False, r.labeler, r.meta)]
        elif isinstance(r, Ranking):
            ranks = r.ranks or tuple(range(len(r.responses)))
            if ranks[0] != ranks[-1]:
                out += [Feedback(r.prompt, r.responses[0], True, r.labeler, r.meta),
                        Feedback(r.prompt, r.responses[-1], False, r.labeler, r.meta)]
    return out


def split_by_prompt(prompts: Sequence[Prompt], heldout_frac: float, seed: int) -> list[bool]:
    """True for held-out: a stable hash of (seed, prompt), so all of a prompt's records fall on
    one side and the reward model, DPO and KTO hold out the same prompts for the same seed."""
    def h(p: Prompt) -> float:
        return int(hashlib.sha1(f"{seed}:{p}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return [h(p) < heldout_frac for p in prompts]
