"""The second embedded task: instruction following with verifiable constraints, in the spirit of
IFEval (Zhou et al. 2023), sized for a small instruct model (SmolLM2-135M-Instruct).

A prompt is a short request on a generated topic ("Describe a rainy morning in a small town.")
followed by one to three constraints, each one plain sentence ("Answer with at most 40 words.
Do not use any commas."). The kinds and their checkers live in `tasks/constraint_kinds.py`;
`constraints_of(prompt)` reads them back from the prompt's own text, so rewards and gold need
nothing but the prompt. Every prompt is drawn together with an answer written from templates that
meets all its constraints (drawn again until one does), so every prompt is satisfiable, and those
answers are the task's demonstrations.

Splits: requests are divided by a hash of their text (one in five goes to "eval"), so no eval
prompt shares its request with a train, rm or rl prompt; train, rm and rl draw from the rest
with different seeded streams.

Gold, rewards and metrics: `ConstraintsGold` (below); the verifiable rewards `followed` and
`all_followed`, for `--reward fn:rlhfkit.tasks.constraints:followed`; IFEval's prompt- and
instruction-level accuracies with 95% intervals (`ifeval_metrics`) and the paired difference of
two policies' prompt-level accuracy on the same prompts (`rlhfkit.stats.paired_delta`).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import ClassVar

from rlhfkit.errors import UserError
from rlhfkit.feedback.labelers import words
from rlhfkit.feedback.records import Demonstration
from rlhfkit.stats import ratio_interval, wilson_interval
from rlhfkit.tasks import constraint_kinds as ck
from rlhfkit.tasks.base import SPLITS
from rlhfkit.tasks.constraint_kinds import Constraint
from rlhfkit.tasks.gold import repetition


@dataclass(frozen=True)
class Family:
    """A kind of request: its phrasings, its topics, and the sentences its answers are made of."""

    requests: tuple[str, ...]  # each with one {x}, no comma, one final . or ?
    topics: tuple[str, ...]
    openers: tuple[str, ...]  # a first sentence naming the topic ({x}, or {X} capitalized)
    fillers: tuple[str, ...]  # more sentences, none naming the topic
    titles: tuple[str, ...]


# The answers' sentences hold no comma and no word of `EXCLUDE_POOL` (tested), so an answer can
# follow "no commas" and "do not use the word ..." by construction. One block per family; a field's
# values are separated by "|", an indented line continues the one above.
_FAMILY_TEXT = """
requests: Write a short note to a friend about {x}. | Write a message to your friend about {x}. | Tell a friend
  about {x} in a short note.
topics: the trip to the lake | the picnic in the park | the new puppy | the school play | the football match | the
  birthday party | the camping weekend | the visit to the zoo | the day at the beach | the bike ride | the concert
  last night | the new bakery in town | the garden show | the snow day | the long train ride | the baking contest
  | the museum visit | the family dinner | the boat trip | the fishing trip | the hike up the hill | the night
  market | the book club meeting | the first day at work
openers: I keep thinking about {x}. | {X} was the highlight of my week. | I wish you had been with us for {x}. | I
  still smile when I remember {x}.
fillers: We laughed until our sides hurt. | The weather stayed calm and bright. | Everyone asked where you were. |
  Next time you should come along. | I took some photos to show you. | Call me when you get a free evening. | Our
  plans for summer keep growing. | Mom sends her warm wishes. | The food tasted better outdoors. | Write back soon
  with your own news.
titles: A Quick Note | News From Me | Hello Friend

requests: Describe {x}. | Write a short description of {x}. | Paint a picture in words of {x}.
topics: a rainy morning in a small town | a busy market at noon | a quiet library in winter | a sunny beach at
  dawn | a forest after the rain | a kitchen before dinner | a city street at night | a farm at sunrise | a snowy
  mountain village | a crowded train station | an old bookshop | a garden in spring | a harbor at dusk | a school
  yard at lunch | a small cafe on a cold day | a field of sunflowers | a lake at sunset | a bakery early in the
  morning | a windy day at the coast | a playground after school | a desert at midday | a river in autumn
openers: Picture {x}. | Here is {x} as I see it. | Few places feel as alive as {x}.
fillers: Soft light falls across every surface. | Voices rise and fade in the distance. | The air smells of wet
  earth. | A cat watches from a low wall. | Colors shift slowly as hours pass. | Nobody seems to be in a hurry. |
  Small sounds fill the gaps between footsteps. | Someone hums an old song nearby. | Shadows stretch long across
  the ground. | Birds call to each other overhead.
titles: A Small Scene | What I See | A Quiet Picture

requests: Give advice to someone {x}. | Share a few tips for someone {x}. | Write some advice for a person {x}.
topics: starting to run | learning to cook | moving to a new city | starting a new job | learning to swim |
  planting a first garden | learning a new language | getting a first pet | saving money for a trip | learning to
  play the guitar | starting to paint | joining a sports team | going on a first long hike | learning to drive |
  trying to sleep better | starting to read more books | learning to ride a bike | planning a small party |
  starting a journal | learning to bake bread
openers: Anyone {x} should begin slowly. | Here is my advice for someone {x}. | My main tip for someone {x} is
  patience.
fillers: Set one small goal for each week. | Ask a friend to join you. | Write down what works and what does not.
  | Rest when your body asks for it. | Mistakes are part of learning. | Celebrate each step forward. | Keep your
  tools simple at first. | Progress comes faster than you expect. | Find a teacher who explains ideas clearly. |
  Compare yourself only with who you were.
titles: Some Advice | Tips To Start | First Steps

requests: Write a short story about {x}. | Tell a tiny story about {x}. | Write a few sentences of a story about
  {x}.
topics: a lost cat | a brave little boat | a robot who learns to paint | a girl who finds a map | an old clock
  that stops | a dog who likes the rain | a baker who wakes up late | a kite stuck in a tree | a dragon who fears
  the dark | a boy and his red bicycle | a mouse in a big library | a lonely lighthouse keeper | a snowman in
  spring | a talking parrot | a tiny seed | a train that is never late | a fox who cannot sleep | a grandmother
  who climbs a mountain
openers: Once there was {x}. | This is the story of {x}. | Long ago people spoke of {x}.
fillers: One morning something strange happened. | Nobody in town could explain it. | By evening everything had
  changed. | A kind stranger offered to help. | The journey took longer than planned. | In the end they found
  their way home. | Years later people still tell the tale. | Sometimes small choices change a whole life. | Rain
  began to fall without warning. | Their neighbors gathered to watch.
titles: A Short Tale | Once Upon A Time | The Story

requests: Explain why {x} matters. | Tell me why {x} matters. | Say in a few sentences why {x} matters.
topics: sleep | drinking water | reading every day | regular exercise | kindness | a healthy breakfast | clean air
  | friendship | music | fresh food | saving money | learning from mistakes | spending time outside | laughter |
  planting trees | saying thank you | honesty | patience | teamwork | a tidy desk
openers: {X} matters more than most people think. | Without {x} daily life gets harder. | There are clear reasons
  why {x} matters.
fillers: It helps both body and mind. | Small habits add up over the years. | People around us notice the
  difference. | It costs little and gives back a lot. | Our energy and mood depend on it. | Scientists have
  studied this for decades. | Even a few minutes make a change. | Most of us can start today. | Children learn it
  best by example. | Over time the rewards grow.
titles: Why It Matters | A Short Answer | The Reasons

requests: Write a thank-you message to {x}. | Thank {x} in a short message. | Write a few words of thanks to {x}.
topics: a teacher | a neighbor who helped you move | a coach | a nurse | a friend who sent a gift | a bus driver |
  a librarian | your grandmother | a colleague | a doctor | a mail carrier | a classmate who shared notes | a chef
  | a volunteer | your parents | a dance teacher | a tour guide
openers: This message is for {x}. | I want to thank {x} from the heart. | These words of thanks go to {x}.
fillers: Your help meant a lot to me. | I will not forget what you did. | You made a hard month easier. | Thank
  you for your time and care. | Your patience did not go unnoticed. | I hope to return the favor soon. | Please
  know how grateful I am. | People like you make a difference. | Our whole family feels the same. | Every visit
  with you lifts my mood.
titles: Many Thanks | With Gratitude | A Thank You
"""


def _families(text: str) -> tuple[Family, ...]:
    out = []
    for block in text.strip().split("\n\n"):
        joined = re.sub(r"\n\s+", " ", block)
        values = dict(line.split(": ", 1) for line in joined.splitlines())
        out.append(Family(*(tuple(v.strip() for v in values[f.name].split("|")) for f in fields(Family))))
    return tuple(out)


FAMILIES: tuple[Family, ...] = _families(_FAMILY_TEXT)
POSTSCRIPTS = ("Write back when you can.", "More news soon.", "Say hello to everyone for me.",
               "I will call you this weekend.")
SLOTS = ("[name]", "[date]", "[place]")
EVAL_EVERY = 5  # one request in five (by a hash of its text) is held out for evaluation
N_CONSTRAINTS = ((1, 0.4), (2, 0.35), (3, 0.25))  # how many constraints a prompt asks for, and how often
_SALTS = {"train": 1, "eval": 2, "rm": 3, "rl": 4, "demos": 20, "corpus": 10}


@dataclass(frozen=True)
class Request:
    family: int
    topic: str
    text: str


def all_requests() -> tuple[Request, ...]:
    return tuple(Request(i, t, r.format(x=t)) for i, f in enumerate(FAMILIES) for r in f.requests for t in f.topics)


def is_eval_request(text: str) -> bool:
    return zlib.crc32(text.encode()) % EVAL_EVERY == 0


@lru_cache(maxsize=2)
def _pool(held_out: bool) -> tuple[Request, ...]:
    return tuple(r for r in all_requests() if is_eval_request(r.text) == held_out)


def draw_constraints(rng: random.Random, request: str) -> list[Constraint]:
    """One to three constraints that do not contradict each other (`constraint_kinds.compatible`)."""
    k = rng.choices([n for n, _ in N_CONSTRAINTS], [p for _, p in N_CONSTRAINTS])[0]
    chosen: list[Constraint] = []
    for _ in range(20):
        if len(chosen) == k:
            break
        options = [K for K in ck.KINDS if not any(ck.kinds_conflict(K.kind, c.kind) for c in chosen)]
        cand = rng.choice(options).draw(rng, request)
        if all(ck.compatible(cand, c) for c in chosen):
            chosen.append(cand)
    return chosen


def render_prompt(request: str, constraints: Sequence[Constraint]) -> str:
    return " ".join([request, *(c.render() for c in constraints)])


@lru_cache(maxsize=65536)
def _constraints_of(prompt: str) -> tuple[Constraint, ...]:
    text = prompt.strip()
    for m in re.finditer(r"[.!?:][\"')\]]*(?=\s)", text):  # try each place the request could end
        got, pos = [], m.end()
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            one = ck.read_constraint(text, pos)
            if one is None:
                break
            got.append(one[0])
            pos = one[1]
        if got and pos >= len(text):
            return tuple(got)
    raise UserError(f"not a prompt of the constraints task (no constraint sentences at its end): {prompt[:80]!r}")


def constraints_of(prompt: str) -> list[Constraint]:
    """The constraints a prompt asks for, read from its own text: the constraint sentences that
    end it, after a request of any wording (so hand-written requests work too). A prompt with no
    constraint sentence at its end (one not from this task) raises UserError."""
    return list(_constraints_of(prompt))


def checks(prompt: str, response: str) -> list[bool]:
    """Whether `response` meets each of the prompt's constraints, in the prompt's order."""
    return [c.check(response) for c in _constraints_of(prompt)]


def followed(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """The verifiable reward: the fraction of its prompt's constraints each response meets."""
    return [sum(ok) / len(ok) for ok in map(checks, prompts, responses)]


def all_followed(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """1.0 for a response that meets every constraint of its prompt, else 0.0 (IFEval's strict prompt-level)."""
    return [float(all(ok)) for ok in map(checks, prompts, responses)]


def _n(by: dict[str, Constraint], kind: str, default: int = 0) -> int:
    """The count `n` of the prompt's constraint of `kind`, or `default` when it asks for none."""
    return getattr(by.get(kind), "n", default)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _lead(word: str, sentence: str) -> str:
    """`sentence` led by `word` ("Today" + "Picture a lake." -> "Today picture a lake.")."""
    star = "*" if sentence.startswith("*") else ""
    body = sentence[len(star):]
    if body.split(" ", 1)[0] != "I":
        body = body[:1].lower() + body[1:]
    return f"{word} {star}{body}"


@dataclass(frozen=True)
class _Draft:
    """What an answer is made of before `_assemble` lays it out."""

    units: tuple[str, ...]  # content sentences, the first naming the topic unless the request is repeated
    extras: tuple[str, ...]  # sentences that carry required words or placeholders
    title: str
    postscript: str


def _assemble(by: dict[str, Constraint], d: _Draft) -> str:
    """Lay out a draft as the constraints in `by` (kind -> constraint) ask."""
    n_hi = _n(by, "highlights")
    shown = [f"*{u}*" if i >= len(d.units) - n_hi else u for i, u in enumerate(d.units)]
    if "json" in by:
        return json.dumps({"answer": " ".join(shown + list(d.extras))})
    n_bullets, n_parts = _n(by, "bullets"), _n(by, "paragraphs") or _n(by, "sections")
    if n_bullets:
        blocks = [shown[:-n_bullets] + list(d.extras)] + [[u] for u in shown[-n_bullets:]]
        blocks = [b for b in blocks if b]
    elif n_parts:
        n = n_parts
        blocks = [shown[len(shown) * j // n: len(shown) * (j + 1) // n] for j in range(n)]
        blocks[-1] = blocks[-1] + list(d.extras)
    else:
        blocks = [shown + list(d.extras)]
    if (start := by.get("start_word")) is not None:
        blocks[0][0] = _lead(getattr(start, "word"), blocks[0][0])
    texts = [" ".join(b) for b in blocks]
    if n_bullets:
        k = len(texts) - n_bullets
        body = "\n".join(texts[:k] + [f"* {t}" for t in texts[k:]])
    else:
        body = ("\n***\n" if "sections" in by else "\n\n").join(texts)
    head = [getattr(by["repeat_request"], "request")] if "repeat_request" in by else []
    head += [f"<<{d.title}>>"] if "title" in by else []
    text = "\n".join(head + [body])
    if "postscript" in by:
        text += f"\n\nP.S. {d.postscript}"
    if (end := by.get("end_phrase")) is not None:
        text += ("\n" if n_bullets and "postscript" not in by else " ") + getattr(end, "phrase")
    if "quoted" in by:
        text = f'"{text}"'
    return text.lower() if "lowercase" in by else text.upper() if "uppercase" in by else text


def write_answer(request: Request, constraints: Sequence[Constraint], rng: random.Random) -> str:
    """An answer to `request` from its family's sentences, laid out to meet `constraints` (which
    the caller checks: a word limit or a repeated word pair can still get in the way)."""
    by = {c.kind: c for c in constraints}
    fam = FAMILIES[request.family]
    fillers = rng.sample(fam.fillers, len(fam.fillers))
    if "repeat_request" in by:  # the repeated request names the topic already
        units = [fillers.pop()]
    else:
        units = [_cap(rng.choice(fam.openers).format(x=request.topic, X=_cap(request.topic)))]
    base = 1 if "max_sentences" in by or "max_words" in by else rng.randint(2, 3)  # terse under a limit
    need = max([base] + [_n(by, k) for k in ("highlights", "bullets", "paragraphs", "sections")])
    while len(units) < need:
        units.append(fillers.pop())
    extras = []
    if (inc := by.get("include_words")) is not None:
        extras.append(f"It all brings {' and '.join(w for w in (getattr(inc, 'word'), getattr(inc, 'other')) if w)}"
                      " to mind.")
    if "placeholders" in by:
        extras.append(f"Fill in {' and '.join(SLOTS[:_n(by, 'placeholders')])} later.")
    d = _Draft(tuple(units), tuple(extras), rng.choice(fam.titles), rng.choice(POSTSCRIPTS))
    text = _assemble(by, d)
    min_words = _n(by, "min_words")
    while len(words(text)) < min_words and fillers:
        d = _Draft(d.units + (fillers.pop(),), d.extras, d.title, d.postscript)
        text = _assemble(by, d)
    return text


_CLOSERS = frozenset(".!?\"'”’)]}>*`")


def unfinished(response: str, constraints: Sequence[Constraint] = ()) -> bool:
    """Whether an answer with words stops mid-sentence: it ends in none of . ! ? or a closing mark
    (quote, bracket, JSON brace, title >>, highlight *, code fence), its last line is no list item,
    and it does not end with a phrase its prompt asked for. So what a constraint demands (a quoted
    answer, a JSON value, a bullet list, an end phrase) is never unfinished; an empty answer is
    not either (the gold's `empty` term counts it)."""
    t = response.rstrip()
    if not words(t) or t[-1] in _CLOSERS or ck.BULLET.match(t.splitlines()[-1]):
        return False
    return not any(isinstance(c, ck.EndPhrase) and c.check(t) for c in constraints)


@dataclass(frozen=True)
class ConstraintsGold:
    """The known taste of the task, the one simulated labelers share:

        gold(x, y) = 2.0 * followed(x, y)     the fraction of the prompt's constraints y meets,
                   - 1.0 * repetition(y)      less the fraction of y's word pairs said before,
                   - 2.0 * empty(y)           2 for an answer with no words (so it scores at most 0,
                                              though it "follows" a word limit or "no commas"),
                   - 0.5 * unfinished(x, y)   and 1/2 for one that stops mid-sentence.

    At most 2.0 (every constraint met, no pair repeated, finished: the demonstrations), at least
    -2.0. Following the constraints dominates; the penalties are what a policy maximizing the
    verifiable reward alone can run into (padding a word count by repeating itself, being cut off
    at the length limit), as `tasks/gold.py`'s terms are for the review task."""

    followed: float = 2.0
    repetition: float = 1.0
    empty: float = 2.0
    unfinished: float = 0.5

    def parts(self, prompt: str, response: str) -> dict[str, float]:
        cons = _constraints_of(prompt)
        ok = [c.check(response) for c in cons]
        return {
            "followed": sum(ok) / len(ok),
            "repetition": repetition(response),
            "empty": float(not words(response)),
            "unfinished": float(unfinished(response, cons)),
        }

    def score(self, prompt: str, response: str) -> float:
        p = self.parts(prompt, response)
        return (self.followed * p["followed"] - self.repetition * p["repetition"]
                - self.empty * p["empty"] - self.unfinished * p["unfinished"])

    def __call__(self, prompt: str, response: str) -> float:
        return self.score(prompt, response)

    def batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]


@dataclass(frozen=True)
class ConstraintsTask:
    """A seeded generator of the task's prompts, demonstrations and corpus (see the module docstring)."""

    seed: int = 0
    name: ClassVar[str] = "constraints"

    @property
    def gold(self) -> ConstraintsGold:
        return ConstraintsGold()

    def _rng(self, salt: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + salt)

    def examples(self, n: int, split: str = "train", salt: str | None = None) -> list[tuple[str, str]]:
        """`n` (prompt, answer) pairs of `split`, each answer meeting all its prompt's constraints;
        `salt` names another stream over the same requests (demonstrations, corpus)."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: use one of {SPLITS}")
        rng = self._rng(_SALTS[salt or split])
        pool = _pool(split == "eval")
        return [_example(rng, pool) for _ in range(n)]

    def prompts(self, n: int, split: str = "train") -> list[str]:
        """`n` prompts of `split`; eval's requests are held out from the other splits'."""
        return [p for p, _ in self.examples(n, split)]

    def metrics(self, prompts: list[str], responses: list[str]) -> dict[str, object]:
        """IFEval's two accuracies with their 95% intervals, for `rlhfkit eval`."""
        m = ifeval_metrics(prompts, responses)
        return {"prompt_acc": m.prompt_acc, "prompt_ci": list(m.prompt_ci), "instr_acc": m.instr_acc,
                "instr_ci": list(m.instr_ci)}

    def demonstrations(self, n: int = 2000) -> list[Demonstration]:
        """SFT data: train-split prompts with template answers that meet every constraint."""
        return [Demonstration(p, "\n" + a) for p, a in self.examples(n, "train", salt="demos")]

    def corpus(self, n_docs: int = 20000) -> list[str]:
        """Pretraining documents: prompt and answer, as demonstrations are, from their own stream."""
        return [p + "\n" + a for p, a in self.examples(n_docs, "train", salt="corpus")]


def _example(rng: random.Random, pool: Sequence[Request], tries: int = 200) -> tuple[str, str]:
    """A prompt drawn from `pool` and an answer meeting all its constraints with no word pair said
    twice; a draw whose answer falls short (a tight word or sentence limit) is drawn again."""
    for _ in range(tries):
        request = rng.choice(pool)
        cons = draw_constraints(rng, request.text)
        answer = write_answer(request, cons, rng)
        if all(c.check(answer) for c in cons) and repetition(answer) == 0 and not unfinished(answer, cons):
            return render_prompt(request.text, cons), answer
    raise RuntimeError(f"no satisfiable prompt in {tries} draws")  # a bug in the pools, not the user's


# IFEval's two accuracies (Zhou et al. 2023, sec. 3): prompt-level, the share of prompts whose
# every instruction is followed; instruction-level, the share of all instructions followed. Both
# "strict": the response is checked as it is (IFEval's "loose" variants also try it with its first
# or last line or its markdown asterisks removed; not here).
@dataclass(frozen=True)
class IFEvalResult:
    prompt_acc: float
    prompt_ci: tuple[float, float]
    instr_acc: float
    instr_ci: tuple[float, float]
    n_prompts: int
    n_instructions: int


def ifeval_metrics(prompts: Sequence[str], responses: Sequence[str]) -> IFEvalResult:
    """Prompt-level accuracy with its Wilson interval, instruction-level accuracy with its
    prompt-clustered interval (`ratio_interval`), over one response per prompt."""
    results = [checks(p, r) for p, r in zip(prompts, responses, strict=True)]
    if not results:
        raise UserError("ifeval_metrics: no responses to score")
    n, k = len(results), sum(all(ok) for ok in results)
    instr, instr_ci = ratio_interval([sum(ok) for ok in results], [len(ok) for ok in results])
    return IFEvalResult(k / n, wilson_interval(k, n), instr, instr_ci, n, sum(len(ok) for ok in results))
