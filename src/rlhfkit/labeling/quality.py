"""Labeler quality: agreement with gold items, inter-annotator agreement (pairwise
agreement and Krippendorff's alpha) and throughput, per project.

Krippendorff's alpha follows Krippendorff (2011), "Computing Krippendorff's
Alpha-Reliability": alpha = 1 - D_o / D_e from the coincidence matrix of values that
coders gave the same unit; units coded once are not pairable and drop out. A rating
project's alpha is also reported per field of its form, with the field's metric (forms.py):
interval for a likert scale, nominal for flags (each flag a yes/no unit) and choices, ordinal
where a field declares it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from statistics import median
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from rlhfkit.labeling.kinds import Kind, kind_object


def _ordinal_delta2(n_c: Mapping[Any, float], order: Sequence[Any] | None) -> Callable[[Any, Any], float]:
    """Krippendorff (2011), ordinal metric: delta^2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2,
    the values' marginals n_g summed over the ranks from c to k (`order`, else sorted)."""
    ranked = list(order) if order is not None else sorted(n_c)
    ranked += sorted(v for v in n_c if v not in ranked)  # a value outside `order` goes last
    rank = {v: i for i, v in enumerate(ranked)}
    cum = [0.0]
    for v in ranked:
        cum.append(cum[-1] + n_c.get(v, 0.0))

    def delta2(a: Any, b: Any) -> float:
        lo, hi = sorted((rank[a], rank[b]))
        return (cum[hi + 1] - cum[lo] - (n_c.get(a, 0.0) + n_c.get(b, 0.0)) / 2) ** 2
    return delta2


def _delta2(metric: str, a: Any, b: Any) -> float:
    if metric == "nominal":
        return 0.0 if a == b else 1.0
    if metric == "interval":
        return float(a - b) ** 2
    raise ValueError(f"unknown metric {metric!r}: nominal, ordinal or interval")


def krippendorff_alpha(units: Mapping[Hashable, Sequence[Any]], metric: str = "nominal",
                       order: Sequence[Any] | None = None) -> float | None:
    """Alpha over `units` (each: the values its coders gave, missing ones left out).
    None when it is undefined (no pairable values, or no variation at all). `order`: the
    values from lowest to highest for the ordinal metric (default: sorted)."""
    coincidence: Counter[tuple[Any, Any]] = Counter()
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        for i, j in combinations(range(m), 2):  # each ordered pair of distinct coders, weight 1/(m-1)
            coincidence[(values[i], values[j])] += 1.0 / (m - 1)
            coincidence[(values[j], values[i])] += 1.0 / (m - 1)
    n_c: Counter[Any] = Counter()
    for (c, _k), o in coincidence.items():
        n_c[c] += o
    n = sum(n_c.values())
    if n <= 1:
        return None
    if metric == "ordinal":
        delta2 = _ordinal_delta2(n_c, order)
    else:
        def delta2(a: Any, b: Any) -> float:
            return _delta2(metric, a, b)
    d_o = sum(o * delta2(c, k) for (c, k), o in coincidence.items()) / n
    d_e = sum(n_c[c] * n_c[k] * delta2(c, k) for c in n_c for k in n_c) / (n * (n - 1))
    if d_e == 0:
        return None
    return 1.0 - d_o / d_e


def pairwise_agreement(units: Mapping[Hashable, Sequence[Any]]) -> float | None:
    """The share of pairs of coders of the same unit who gave the same value."""
    agree = total = 0
    for values in units.values():
        for a, b in combinations(values, 2):
            agree += a == b
            total += 1
    return agree / total if total else None


@dataclass(frozen=True)
class LabelerStats:
    labeler: str
    answers: int
    gold_answers: int
    gold_agreement: float | None  # mean over the gold items they answered
    median_seconds: float | None
    labels_per_hour: float | None


@dataclass(frozen=True)
class FieldAgreement:
    """Agreement on one field of a rating project's form."""

    field: str
    type: str  # likert, flags, choice
    metric: str  # Krippendorff's alpha metric
    units: int  # units answered by two labelers or more (a flags field: one per flag and item)
    pairwise_agreement: float | None
    krippendorff_alpha: float | None


@dataclass(frozen=True)
class ProjectQuality:
    kind: str
    items: int
    answers: int
    pairwise_agreement: float | None
    krippendorff_alpha: float | None
    labelers: list[LabelerStats]
    fields: tuple[FieldAgreement, ...] = ()  # a rating project's, field by field


def _seconds(answer: Any) -> float:
    return answer.seconds_active if answer.seconds_active is not None else answer.seconds_wall


def project_quality(kind: str | Kind, items_with_answers: Iterable[tuple[Any, list[Any]]]) -> ProjectQuality:
    """Agreement and throughput from `LabelStore.items_with_answers(project)`; `kind`: the
    project's kind object (`kinds.kind_of(project)`: a rating project's with its form) or name."""
    kind = kind_object(kind)
    units: dict[Hashable, list[Any]] = defaultdict(list)
    field_units: dict[str, dict[Hashable, list[Any]]] = defaultdict(lambda: defaultdict(list))
    gold_scores: dict[str, list[float]] = defaultdict(list)
    per_labeler: dict[str, list[Any]] = defaultdict(list)
    n_items = n_answers = 0
    for item, answers in items_with_answers:
        n_items += 1
        for a in answers:
            n_answers += 1
            per_labeler[a.labeler].append(a)
            for sub, value in kind.judgments(a.payload):
                units[(item.id, sub)].append(value)
            for name, sub, value in kind.field_units(a.payload):
                field_units[name][(item.id, sub)].append(value)
            if item.gold is not None:
                gold_scores[a.labeler].append(kind.gold_agreement(a.payload, item.gold))
    stats = []
    for name in sorted(per_labeler):
        secs = [_seconds(a) for a in per_labeler[name]]
        golds = gold_scores.get(name, [])
        total = sum(secs)
        stats.append(LabelerStats(name, len(secs), len(golds), sum(golds) / len(golds) if golds else None,
                                  median(secs) if secs else None, len(secs) / total * 3600 if total > 0 else None))
    fields = tuple(_field_agreement(f, field_units[f.name]) for f in kind.agreement_fields())
    return ProjectQuality(kind.name, n_items, n_answers, pairwise_agreement(units),
                          krippendorff_alpha(units, kind.alpha_metric, kind.alpha_order), stats, fields)


def _field_agreement(field: Any, units: Mapping[Hashable, Sequence[Any]]) -> FieldAgreement:
    pairable = sum(len(v) >= 2 for v in units.values())
    return FieldAgreement(field.name, field.type, field.metric, pairable, pairwise_agreement(units),
                          krippendorff_alpha(units, field.metric, field.order()))


@dataclass(frozen=True)
class DemonstrationScore:
    """A labeler's "demonstration score" (InstructGPT's screening, Ouyang et al. 2022, appendix B.1:
    a Likert-rated demonstration-writing test): the mean over their rated demonstrations of each
    one's mean admin rating (1-7)."""

    labeler: str
    score: float
    rated: int  # their demonstrations rated by at least one admin


def demonstration_scores(items_with_answers: Iterable[tuple[Any, list[Any]]],
                         ratings: Mapping[int, Sequence[tuple[str, int]]]) -> dict[str, DemonstrationScore]:
    """Per labeler, from `LabelStore.items_with_answers` and `LabelStore.demonstration_ratings`."""
    per: dict[str, list[float]] = defaultdict(list)
    for _item, answers in items_with_answers:
        for a in answers:
            got = ratings.get(a.id)
            if got:
                per[a.labeler].append(sum(score for _admin, score in got) / len(got))
    return {name: DemonstrationScore(name, sum(v) / len(v), len(v)) for name, v in sorted(per.items())}
