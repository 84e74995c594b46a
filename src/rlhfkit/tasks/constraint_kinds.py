"""The verifiable constraints of the instruction-following task (`tasks/constraints.py`).

Each kind is a small frozen dataclass that
- `render()`s itself as one plain English instruction (its `template`),
- is `read` back from prompt text by a regex built from that same template,
- `check(response) -> bool`s an answer, with no model and no judgment call,
- `draw(rng, request)`s its parameters.
The kinds follow the instruction groups of IFEval (Zhou et al. 2023, "Instruction-Following
Evaluation for Large Language Models", table 1), reworded for a small model: one short
sentence each, numbers as digits. The checkers are written from the sentences here, not
ported from IFEval's code; where they choose something, the class docstring says what.

Words are counted as `feedback.labelers.words` counts them (runs of letters and apostrophes,
case-folded), so "P.S." is two words and "42" none. `CONFLICTS` lists the pairs of kinds that
a prompt never asks for together (they contradict, or make each other ambiguous to check);
`compatible` adds the checks that depend on parameters.
"""

from __future__ import annotations

import json
import random
import re
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from rlhfkit.feedback.labelers import words

# Parameter pools. The words a prompt may forbid are ones a small model says all the time; none
# of them occurs in the other pools or in the demonstration writer's sentences (tested).
INCLUDE_POOL = ("sun", "river", "bread", "window", "music", "garden", "smile", "candle", "blue",
                "stone", "cloud", "map", "green", "quiet", "laugh", "tea")
EXCLUDE_POOL = ("very", "really", "good", "great", "nice", "happy", "beautiful", "amazing", "just",
                "fun", "wonderful", "love", "thing", "things")
START_WORDS = ("Today", "Honestly", "Well", "Now", "Indeed", "So", "Truly")
END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have questions.",
               "That is all for now.", "Thanks for reading.", "See you soon.", "Take care.")

_FIELD_RE = {"n": r"(?P<n>\d+)", "word": r"(?P<word>[A-Za-z']+)", "other": r"(?P<other>[A-Za-z']+)",
             "phrase": r'(?P<phrase>[^"]+)', "request": r'(?P<request>[^"]+)', "s": "s?"}
_SENTENCE_SPLIT = re.compile(r"[.!?]+(?=[\s\"'*)\]]|$)|\n")
_LETTER = re.compile(r"[A-Za-z]")
BULLET = re.compile(r"^[ \t]*[*-][ \t]+\S", re.MULTILINE)  # a list item line: "* " or "- "
_HIGHLIGHT = re.compile(r"\*[^\s*](?:[^*\n]*[^\s*])?\*")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_TITLE = re.compile(r"<<[^<>\n]*[A-Za-z0-9][^<>\n]*>>")
_POSTSCRIPT = re.compile(r"^[^\w\n]*p\.[ \t]?s\.", re.IGNORECASE | re.MULTILINE)
_DIVIDER = re.compile(r"^[ \t]*\*\*\*[ \t]*$", re.MULTILINE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(.*)\n```$", re.DOTALL | re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """The sentences of `text`: pieces between runs of . ! ? (before a space, quote, bracket or the
    end) and line breaks, keeping those with a letter; a title line or a list item is one."""
    return [s for s in _SENTENCE_SPLIT.split(text) if _LETTER.search(s)]


def _blocks(parts: list[str]) -> int:
    return sum(1 for p in parts if _LETTER.search(p))


class Constraint(ABC):
    """One verifiable instruction (see the module docstring). Subclasses are frozen dataclasses
    whose fields are named as the `{fields}` of their `template`."""

    kind: ClassVar[str]
    template: ClassVar[str]
    _pattern: ClassVar[re.Pattern[str]]

    choices: ClassVar[tuple[Any, ...]] = ()  # the values `draw` picks the one field from
    mandates: ClassVar[tuple[str, ...]] = ()  # the fields whose text the answer must contain

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.kind = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()  # MinWords -> "min_words"
        cls._pattern = _template_pattern(cls.template)

    def render(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return self.template.format(**values, s="" if values.get("n") == 1 else "s")  # {s}: a plural's s

    @classmethod
    def read(cls, text: str, pos: int = 0) -> tuple[Constraint, int] | None:
        """The constraint whose sentence starts at `text[pos]`, and where it ends; None if none."""
        m = cls._pattern.match(text, pos)
        if m is None:
            return None
        return cls(**{k: int(v) if k == "n" else v for k, v in m.groupdict().items()}), m.end()

    @classmethod
    def draw(cls, rng: random.Random, request: str) -> Constraint:
        return cls(rng.choice(cls.choices)) if cls.choices else cls()

    @abstractmethod
    def check(self, response: str) -> bool:
        """Whether `response` meets this constraint."""

    def mandated_text(self) -> str:
        """Text this constraint forces into the answer (to keep other constraints from forbidding it)."""
        return " ".join(getattr(self, f) for f in self.mandates)


def _template_pattern(template: str) -> re.Pattern[str]:
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name:
            out.append(_FIELD_RE[name])
    return re.compile("".join(out))


@dataclass(frozen=True)
class MinWords(Constraint):
    n: int
    template = "Answer with at least {n} word{s}."
    choices = (20, 30, 40, 50)

    def check(self, response: str) -> bool:
        return len(words(response)) >= self.n


@dataclass(frozen=True)
class MaxWords(Constraint):
    n: int
    template = "Answer with at most {n} word{s}."
    choices = (30, 40, 50, 60, 80)

    def check(self, response: str) -> bool:
        return len(words(response)) <= self.n


@dataclass(frozen=True)
class MaxSentences(Constraint):
    """Sentences as `sentences` splits them."""

    n: int
    template = "Use at most {n} sentence{s}."
    choices = (2, 3, 4, 5)

    def check(self, response: str) -> bool:
        return len(sentences(response)) <= self.n


@dataclass(frozen=True)
class IncludeWords(Constraint):
    """One or two given words, each as a whole word, in any case."""

    word: str
    other: str = ""
    template = 'Include the word "{word}".'
    mandates = ("word", "other")
    two: ClassVar[str] = 'Include the words "{word}" and "{other}".'
    _two: ClassVar[re.Pattern[str]] = _template_pattern(two)

    def render(self) -> str:
        return (self.two if self.other else self.template).format(word=self.word, other=self.other)

    @classmethod
    def read(cls, text: str, pos: int = 0) -> tuple[Constraint, int] | None:
        m = cls._two.match(text, pos) or cls._pattern.match(text, pos)
        return None if m is None else (cls(**m.groupdict()), m.end())

    @classmethod
    def draw(cls, rng: random.Random, request: str) -> Constraint:
        return cls(*rng.sample(INCLUDE_POOL, 2)) if rng.random() < 0.5 else cls(rng.choice(INCLUDE_POOL))

    def check(self, response: str) -> bool:
        have = set(words(response))
        return all(w.lower() in have for w in (self.word, self.other) if w)


@dataclass(frozen=True)
class ExcludeWord(Constraint):
    """The word, as a whole word in any case, must not appear; it is never one of the request's."""

    word: str
    template = 'Do not use the word "{word}".'

    @classmethod
    def draw(cls, rng: random.Random, request: str) -> Constraint:
        asked = set(words(request))
        return cls(rng.choice([w for w in EXCLUDE_POOL if w not in asked]))

    def check(self, response: str) -> bool:
        return self.word.lower() not in words(response)


@dataclass(frozen=True)
class Bullets(Constraint):
    """Lines starting with "* " or "- " (after any indent) are bullets; other lines may surround them."""

    n: int
    template = 'Use exactly {n} bullet point{s}, each on its own line starting with "* ".'
    choices = (2, 3, 4)

    def check(self, response: str) -> bool:
        return len(BULLET.findall(response)) == self.n


@dataclass(frozen=True)
class Lowercase(Constraint):
    template = "Write your whole answer in lowercase letters only."

    def check(self, response: str) -> bool:
        return bool(_LETTER.search(response)) and response == response.lower()


@dataclass(frozen=True)
class Uppercase(Constraint):
    template = "Write your whole answer in capital letters only."

    def check(self, response: str) -> bool:
        return bool(_LETTER.search(response)) and response == response.upper()


@dataclass(frozen=True)
class EndPhrase(Constraint):
    """The answer, less trailing white space, ends with the phrase (in any case, as IFEval compares)."""

    phrase: str
    template = 'End your answer with the exact words "{phrase}" and nothing after them.'
    mandates = ("phrase",)
    choices = END_PHRASES

    def check(self, response: str) -> bool:
        return response.rstrip().lower().endswith(self.phrase.lower())


@dataclass(frozen=True)
class Quoted(Constraint):
    """The answer, less surrounding white space, opens and closes with a double quote (straight or curly)."""

    template = "Wrap your whole answer in double quotes."

    def check(self, response: str) -> bool:
        t = response.strip()
        return len(t) >= 2 and t[0] in '"“' and t[-1] in '"”' and bool(_LETTER.search(t))


@dataclass(frozen=True)
class Title(Constraint):
    template = "Give your answer a title in double angle brackets, like <<my title>>."

    def check(self, response: str) -> bool:
        return _TITLE.search(response) is not None


@dataclass(frozen=True)
class NoCommas(Constraint):
    template = "Do not use any commas."

    def check(self, response: str) -> bool:
        return "," not in response


@dataclass(frozen=True)
class Json(Constraint):
    """The whole answer parses as a JSON object or array (a bare number or string does not count);
    one ``` or ```json fence around it is allowed."""

    template = "Format your whole answer as valid JSON."

    def check(self, response: str) -> bool:
        t = response.strip()
        fenced = _FENCE.match(t)
        try:
            value = json.loads(fenced.group(1) if fenced else t)
        except ValueError:
            return False
        return isinstance(value, (dict, list))


@dataclass(frozen=True)
class Paragraphs(Constraint):
    """Paragraphs are the pieces between blank lines that hold a letter."""

    n: int
    template = "Write exactly {n} paragraph{s} separated by blank lines."
    choices = (2, 3)

    def check(self, response: str) -> bool:
        return _blocks(_BLANK_LINE.split(response.strip())) == self.n


@dataclass(frozen=True)
class Sections(Constraint):
    """Parts are the pieces between lines that are only the markdown divider *** and hold a letter."""

    n: int
    template = "Write exactly {n} paragraph{s} separated by the divider ***."
    choices = (2, 3)

    def check(self, response: str) -> bool:
        return _blocks(_DIVIDER.split(response)) == self.n


@dataclass(frozen=True)
class StartWord(Constraint):
    """The first word (skipping quotes, asterisks and other marks) is the given word, in any case."""

    word: str
    template = 'Start your answer with the word "{word}".'
    mandates = ("word",)
    choices = START_WORDS

    def check(self, response: str) -> bool:
        w = words(response)
        return bool(w) and w[0] == self.word.lower()


@dataclass(frozen=True)
class Postscript(Constraint):
    """Some line starts (after marks such as quotes) with "P.S." in any case, "P. S." too."""

    template = "At the end, add a postscript starting with P.S."

    def check(self, response: str) -> bool:
        return _POSTSCRIPT.search(response) is not None

    def mandated_text(self) -> str:
        return "P.S."


@dataclass(frozen=True)
class RepeatRequest(Constraint):
    """The answer starts with the request exactly (after white space) and goes on to say more."""

    request: str
    template = 'First repeat the request "{request}" word for word, then answer it.'
    mandates = ("request",)

    @classmethod
    def draw(cls, rng: random.Random, request: str) -> Constraint:
        return cls(request)

    def check(self, response: str) -> bool:
        t = response.strip()
        return t.startswith(self.request) and bool(words(t[len(self.request):]))


@dataclass(frozen=True)
class Highlights(Constraint):
    """Highlights are *spans* on one line with no space just inside the asterisks (so a "* " bullet
    or a *** divider is none); **bold** counts once."""

    n: int
    template = "Highlight at least {n} part{s} of your answer with asterisks, like *this part*."
    choices = (1, 2, 3)

    def check(self, response: str) -> bool:
        return len(_HIGHLIGHT.findall(response)) >= self.n


@dataclass(frozen=True)
class Placeholders(Constraint):
    n: int
    template = "Include at least {n} placeholder{s} in square brackets, like [name]."
    choices = (1, 2, 3)

    def check(self, response: str) -> bool:
        return len(_PLACEHOLDER.findall(response)) >= self.n


KINDS: tuple[type[Constraint], ...] = (
    MinWords, MaxWords, MaxSentences, IncludeWords, ExcludeWord, Bullets, Lowercase, Uppercase,
    EndPhrase, Quoted, Title, NoCommas, Json, Paragraphs, Sections, StartWord, Postscript,
    RepeatRequest, Highlights, Placeholders,
)
KIND_NAMES: tuple[str, ...] = tuple(k.kind for k in KINDS)

# Kinds never asked together: each line is a kind and the kinds it excludes (the relation is
# symmetric). They contradict (lowercase, uppercase), leave no room for each other (JSON and
# anything outside the JSON value; bullets or titles inside paragraphs, which would make the count
# ambiguous), or would force text another forbids (repeating a capitalized request in lowercase).
_CONFLICT_LINES = """
json: bullets lowercase uppercase end_phrase quoted title no_commas paragraphs sections start_word
      postscript repeat_request highlights max_sentences
lowercase: uppercase repeat_request
uppercase: repeat_request
bullets: paragraphs sections quoted max_sentences
paragraphs: sections title postscript repeat_request max_sentences
sections: title postscript repeat_request max_sentences
quoted: repeat_request end_phrase title
title: start_word repeat_request
start_word: repeat_request
repeat_request: max_sentences max_words
postscript: max_sentences
max_sentences: min_words
"""


def _conflicts(text: str) -> frozenset[frozenset[str]]:
    pairs, head = set(), ""
    for line in text.strip().splitlines():
        if ":" in line:
            head, _, line = line.partition(":")
        pairs.update(frozenset((head.strip(), other)) for other in line.split())
    unknown = {k for p in pairs for k in p} - set(KIND_NAMES)
    assert not unknown, unknown
    return frozenset(pairs)


CONFLICTS: frozenset[frozenset[str]] = _conflicts(_CONFLICT_LINES)


def kinds_conflict(a: str, b: str) -> bool:
    """Whether kinds `a` and `b` are never asked together (a kind conflicts with itself)."""
    return a == b or frozenset((a, b)) in CONFLICTS


def compatible(a: Constraint, b: Constraint) -> bool:
    """Whether one prompt may ask for both: kinds that do not conflict, word limits at least 20
    apart, and no word or comma forbidden that the other puts in the answer."""
    if kinds_conflict(a.kind, b.kind):
        return False
    for x, y in ((a, b), (b, a)):
        if isinstance(x, MinWords) and isinstance(y, MaxWords) and y.n < x.n + 20:
            return False
        if isinstance(x, ExcludeWord) and x.word.lower() in words(y.mandated_text()):
            return False
        if isinstance(x, NoCommas) and "," in y.mandated_text():
            return False
    return True


def read_constraint(text: str, pos: int) -> tuple[Constraint, int] | None:
    """The constraint of any kind whose sentence starts at `text[pos]`, and where it ends."""
    for kind in KINDS:
        got = kind.read(text, pos)
        if got is not None:
            return got
    return None
