"""Simulated labelers: noisy judges of a known gold score, standing in for humans.

Each labeler sees a utility u(x, y) = gold(x, y) + bias * words(y) / 10 and judges by
- pairwise: P(a > b) = sigmoid((u_a - u_b) / temperature)   (Bradley-Terry),
- ranking:  Plackett-Luce with scores u / temperature, sampled by sorting
            u / temperature + Gumbel noise (the Gumbel-max trick),
- rating:   round(4 + scale * u / 3 + temperature * N(0, 1)), clipped to 1..7.
Utilities closer than `tie_margin` are judged ties. With probability `flip` a
labeler answers carelessly (AlpacaFarm's simulated annotator pool, Dubois et al.
2023): the pairwise label is flipped and the ranking is a random permutation.

The gold scorer reads text: a conversational prompt reaches it as its transcript
(`records.prompt_text`), while the labels keep the prompt as it came.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from rlhfkit.feedback.records import (
    Comparison,
    Completions,
    Prompt,
    Ranking,
    Rating,
    prompt_text,
)

# The gold taste, handed to the labelers by whoever builds them (a task's gold scorer):
# (prompt text, response) -> score.
GoldFn = Callable[[str, str], float]

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased: what a labeler's taste for length counts."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class SimulatedLabeler:
    name: str
    temperature: float = 0.5  # Bradley-Terry / Plackett-Luce noise on the gold scale
    flip: float = 0.0  # probability of a careless answer
    length_bias: float = 0.0  # extra utility per 10 words (a taste for longer answers)
    tie_margin: float = 0.02  # utilities closer than this are ties

    def utility(self, gold: float, response: str) -> float:
        return gold + self.length_bias * len(words(response)) / 10.0

    def compare(self, prompt: Prompt, a: str, b: str, gold_a: float, gold_b: float, rng: random.Random) -> Comparison:
        ua, ub = self.utility(gold_a, a), self.utility(gold_b, b)
        if abs(ua - ub) < self.tie_margin:
            return Comparison(prompt, a, b, tie=True, labeler=self.name)
        p_a = 1.0 / (1.0 + math.exp(-(ua - ub) / max(self.temperature, 1e-6)))
        a_wins = rng.random() < p_a
        if rng.random() < self.flip:
            a_wins = not a_wins
        chosen, rejected = (a, b) if a_wins else (b, a)
        return Comparison(prompt, chosen, rejected, labeler=self.name)

    def rank(self, prompt: Prompt, responses: Sequence[str], golds: Sequence[float], rng: random.Random) -> Ranking:
        u = [self.utility(g, r) for g, r in zip(golds, responses, strict=True)]
        if rng.random() < self.flip:
            order = list(range(len(responses)))
            rng.shuffle(order)
        else:
            keys = [ui / max(self.temperature, 1e-6) - math.log(-math.log(rng.random() or 1e-300)) for ui in u]
            order = sorted(range(len(responses)), key=lambda i: -keys[i])
        ranks, r = [0], 0
        for prev, cur in zip(order, order[1:]):
            r += abs(u[prev] - u[cur]) >= self.tie_margin
            ranks.append(r)
        return Ranking(prompt, tuple(responses[i] for i in order), labeler=self.name, ranks=tuple(ranks))

    def rate(self, prompt: Prompt, response: str, gold: float, rng: random.Random, scale: float = 3.0) -> Rating:
        u = self.utility(gold, response)
        score = round(4 + scale * u / 3.0 + self.temperature * rng.gauss(0.0, 1.0))
        return Rating(prompt, response, int(min(7, max(1, score))), labeler=self.name)


def default_pool() -> list[SimulatedLabeler]:
    """Four labelers of differing care and taste, one of them partial to long answers."""
    return [
        SimulatedLabeler("careful", temperature=0.3, flip=0.0),
        SimulatedLabeler("typical", temperature=0.5, flip=0.05),
        SimulatedLabeler("noisy", temperature=1.0, flip=0.15),
        SimulatedLabeler("verbose-fan", temperature=0.5, flip=0.05, length_bias=0.3),
    ]


@dataclass
class LabelerPool:
    """Assigns each item to one labeler of the pool (round-robin by a seeded draw)."""

    labelers: list[SimulatedLabeler] = field(default_factory=default_pool)
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _pick(self) -> SimulatedLabeler:
        return self.rng.choice(self.labelers)

    def rank_all(self, items: Sequence[Completions], gold: GoldFn) -> list[Ranking]:
        return [self._pick().rank(c.prompt, c.responses, [gold(prompt_text(c.prompt), r) for r in c.responses],
                                  self.rng) for c in items]

    def compare_all(self, items: Sequence[Completions], gold: GoldFn) -> list[Comparison]:
        out = []
        for c in items:
            a, b, x = c.responses[0], c.responses[1], prompt_text(c.prompt)
            out.append(self._pick().compare(c.prompt, a, b, gold(x, a), gold(x, b), self.rng))
        return out

    def rate_all(self, items: Sequence[Completions], gold: GoldFn) -> list[Rating]:
        return [self._pick().rate(c.prompt, r, gold(prompt_text(c.prompt), r), self.rng)
                for c in items for r in c.responses]


def agreement_with_gold(comparisons: Sequence[Comparison], gold: GoldFn) -> dict[str, float]:
    """Per labeler: the fraction of its non-tie judgments that the gold scorer agrees with."""
    hits: dict[str, list[int]] = {}
    for c in comparisons:
        if c.tie:
            continue
        x = prompt_text(c.prompt)
        g = gold(x, c.chosen) - gold(x, c.rejected)
        if g == 0:
            continue
        hits.setdefault(c.labeler or "?", []).append(int(g > 0))
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def inter_labeler_agreement(labels: dict[str, Sequence[Comparison]]) -> dict[str, float]:
    """Pairwise agreement between labelers who judged the same (prompt, {a, b}) pairs.

    `labels` maps labeler -> its comparisons; returns "l1|l2" -> agreement rate over shared pairs."""
    def keyed(cs: Sequence[Comparison]) -> dict[tuple[Prompt, frozenset[str]], str | None]:
        return {(c.prompt, frozenset((c.chosen, c.rejected))): (None if c.tie else c.chosen) for c in cs}

    names = sorted(labels)
    views = {n: keyed(labels[n]) for n in names}
    out: dict[str, float] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(views[a]) & set(views[b])
            if shared:
                out[f"{a}|{b}"] = sum(views[a][k] == views[b][k] for k in shared) / len(shared)
    return out
