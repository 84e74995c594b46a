"""Records of human (or simulated) judgment: what every learner from feedback reads.

- `Demonstration(prompt, response)`: what a labeler would write (SFT data).
- `Comparison(prompt, chosen, rejected, tie, weight, labeler)`: one pairwise judgment.
- `Ranking(prompt, responses best-to-worst, labeler)`: K responses ordered; it expands
  to its C(K, 2) comparisons, each weighted 1/C(K, 2) so that every ranking counts
  once (InstructGPT, Ouyang et al. 2022, sec. 3.5).
- `Rating(prompt, response, score 1-7, flags, notes, labeler)`: a Likert judgment
  with the InstructGPT metadata flags.
- `Completions(prompt, responses)`: K unjudged samples from a policy (what labelers see).

Records validate themselves on construction and raise `RecordError` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from math import comb
from typing import Any, ClassVar, Union

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


def _need_str(name: str, value: Any, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise RecordError(name, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(name, "must not be empty")


def _need_opt_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise RecordError(name, f"expected a string or null, got {type(value).__name__}")


@dataclass(frozen=True)
class Demonstration:
    kind: ClassVar[str] = "demonstration"
    prompt: str
    response: str

    def __post_init__(self) -> None:
        _need_str("prompt", self.prompt)
        _need_str("response", self.response, allow_empty=False)


@dataclass(frozen=True)
class Comparison:
    kind: ClassVar[str] = "comparison"
    prompt: str
    chosen: str
    rejected: str
    tie: bool = False
    weight: float = 1.0
    labeler: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_str("prompt", self.prompt)
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
    prompt: str
    responses: tuple[str, ...]
    labeler: str | None = None
    ranks: tuple[int, ...] | None = None  # rank per response (0 = best); equal ranks are ties
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_str("prompt", self.prompt)
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
    kind: ClassVar[str] = "rating"
    prompt: str
    response: str
    score: int
    flags: tuple[str, ...] = ()
    notes: str = ""
    labeler: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _need_str("prompt", self.prompt)
        _need_str("response", self.response)
        if isinstance(self.score, bool) or not isinstance(self.score, int):
            raise RecordError("score", f"expected an integer 1-7, got {self.score!r}")
        if not 1 <= self.score <= 7:
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
class Completions:
    kind: ClassVar[str] = "completions"
    prompt: str
    responses: tuple[str, ...]
    policy: str | None = None

    def __post_init__(self) -> None:
        _need_str("prompt", self.prompt)
        if not isinstance(self.responses, (list, tuple)) or len(self.responses) < 1:
            raise RecordError("responses", "expected a non-empty list of strings")
        object.__setattr__(self, "responses", tuple(self.responses))
        for i, r in enumerate(self.responses):
            _need_str(f"responses[{i}]", r)
        _need_opt_str("policy", self.policy)


Record = Union[Demonstration, Comparison, Ranking, Rating, Completions]
RECORD_TYPES: dict[str, type] = {c.kind: c for c in (Demonstration, Comparison, Ranking, Rating, Completions)}


def record_to_dict(record: Record) -> dict[str, Any]:
    d = asdict(record)
    for k in ("responses", "flags", "ranks"):
        if isinstance(d.get(k), tuple):
            d[k] = list(d[k])
    if not d.get("meta"):
        d.pop("meta", None)
    if d.get("ranks") is None:
        d.pop("ranks", None)
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
