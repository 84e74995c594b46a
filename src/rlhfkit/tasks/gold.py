"""The gold scorer: the known taste that every simulated labeler shares (with noise).

    gold(x, y) = 3 * vader(y)                      labelers like positive reviews
               - 3 * repetition(y)                 but not ones that repeat themselves,
               - 1 * unfinished(y)                 stop mid-sentence,
               - 0.1 * max(0, words(y) - 40)       ramble past 40 words,
               - 1 * off_topic(x, y)               or never name the item asked about.

`vader(y)` is the compound score of VADER (Hutto & Gilbert 2014), an independent
lexicon-and-rules sentiment scorer in [-1, 1]. `repetition(y)` is the fraction of
word bigrams that occur earlier in the text (0 for fresh text, near 1 for "great
great great ..."). A reward model trained on a few thousand comparisons learns
mostly the sentiment term; the penalties are what a policy that maximizes the
proxy tends to run into (repeating praise words, never stopping), which is how
reward over-optimization shows up on this task (Gao et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from rlhfkit.feedback.labelers import words
from rlhfkit.tasks.reviews import item_of


@lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def repetition(text: str) -> float:
    """Fraction of word bigrams already seen earlier in the text."""
    w = words(text)
    bigrams = list(zip(w, w[1:]))
    if not bigrams:
        return 0.0
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for b in bigrams:
        repeats += b in seen
        seen.add(b)
    return repeats / len(bigrams)


def unfinished(text: str) -> bool:
    t = text.strip()
    return not t or t[-1] not in ".!?"


@dataclass(frozen=True)
class GoldScorer:
    """Weights of the gold taste (see the module docstring)."""

    sentiment: float = 3.0
    repetition: float = 3.0
    unfinished: float = 1.0
    length: float = 0.1
    max_words: int = 40
    off_topic: float = 1.0

    def parts(self, prompt: str, response: str) -> dict[str, float]:
        n = len(words(response))
        item = item_of(prompt)
        off = item is not None and item.lower() not in response.lower()
        return {
            "sentiment": _vader().polarity_scores(response)["compound"] if n else 0.0,
            "repetition": repetition(response),
            "unfinished": float(unfinished(response)),
            "excess_words": float(max(0, n - self.max_words)),
            "off_topic": float(off),
        }

    def score(self, prompt: str, response: str) -> float:
        p = self.parts(prompt, response)
        return (self.sentiment * p["sentiment"] - self.repetition * p["repetition"]
                - self.unfinished * p["unfinished"] - self.length * p["excess_words"]
                - self.off_topic * p["off_topic"])

    def __call__(self, prompt: str, response: str) -> float:
        return self.score(prompt, response)

    def batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]
