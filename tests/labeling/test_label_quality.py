"""Agreement measures against hand-computed values, and per-labeler quality."""

from __future__ import annotations

import pytest

from rlhfkit.labeling.kinds import gold_agreement, judgments, validate_answer
from rlhfkit.labeling.quality import krippendorff_alpha, pairwise_agreement, project_quality
from rlhfkit.labeling.store import LabelStore

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
# example with missing values: alpha = 0.743 (nominal) and 0.849 (interval).
_ = None
CODERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]
UNITS = {u: [c[u] for c in CODERS if c[u] is not None] for u in range(12)}


def test_krippendorff_alpha_matches_the_published_example() -> None:
    assert krippendorff_alpha(UNITS, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(UNITS, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha({1: ["a", "a"], 2: ["b", "b"]}) == 1.0
    assert krippendorff_alpha({1: ["a", "a"], 2: ["a", "a"]}) is None  # no variation: undefined
    assert krippendorff_alpha({1: ["a"], 2: ["b"]}) is None  # nothing pairable
    # two coders who always disagree on two values: D_o = 1, D_e = n/(n-1) * 1/2 -> alpha = 1 - 1/(2/3) = -0.5
    assert krippendorff_alpha({1: ["a", "b"], 2: ["b", "a"]}) == pytest.approx(-0.5)


def test_pairwise_agreement_by_hand() -> None:
    # unit 1: 3 coders, pairs (a,a) (a,b) (a,b) -> 1 of 3; unit 2: (x, x) -> 1 of 1; unit 3: one coder
    assert pairwise_agreement({1: ["a", "a", "b"], 2: ["x", "x"], 3: ["z"]}) == pytest.approx(2 / 4)
    assert pairwise_agreement({1: ["a"]}) is None


def test_judgments_and_gold_agreement_per_kind() -> None:
    assert judgments("ranking", {"ranks": [0, 1, 1]}) == [((0, 1), -1), ((0, 2), -1), ((1, 2), 0)]
    assert judgments("pairwise", {"choice": "cant_tell"}) == []
    assert gold_agreement("ranking", {"ranks": [0, 1, 2]}, {"ranks": [0, 2, 1]}) == pytest.approx(2 / 3)
    assert gold_agreement("pairwise", {"choice": "tie"}, {"choice": "A"}) == 0.0
    assert gold_agreement("rating", {"score": 5}, {"score": 6}) == 1.0
    assert gold_agreement("rating", {"score": 3}, {"score": 6}) == 0.0
    assert validate_answer("ranking", 4, {"ranks": [3, 3, 0, 1]}) == {"ranks": [2, 2, 0, 1]}


def test_project_quality_from_the_store(store: LabelStore) -> None:
    users = [store.add_user(n, "password123")[0] for n in ("ann", "bob", "cat")]
    store.create_project("p", "pairwise", labels_per_item=3, gold_every=0)
    items = [store.add_pairwise_item("p", f"q{i}", text_a="a", text_b="b") for i in range(2)]
    store.add_pairwise_item("p", "g", text_a="a", text_b="b", gold={"choice": "A"})
    answers = {"ann": ["A", "B", "A"], "bob": ["A", "B", "B"], "cat": ["A", "A", "A"]}
    for u in users:
        for n, choice in enumerate(answers[u.username]):
            item = store.next_item("p", u)
            store.submit(u, item.id, f"{u.username}-{n:06d}", {"choice": choice}, seconds_active=10.0)
    q = project_quality("pairwise", store.items_with_answers("p"))
    assert q.items == 3 and q.answers == 9 and len(items) == 2
    # units: q0 (A,A,A) 3/3 pairs agree; q1 (B,B,A) 1/3; gold (A,B,A) 1/3 -> 5/9
    assert q.pairwise_agreement == pytest.approx(5 / 9)
    assert q.krippendorff_alpha is not None and q.krippendorff_alpha < 5 / 9
    by = {s.labeler: s for s in q.labelers}
    assert by["bob"].gold_agreement == 0.0 and by["ann"].gold_agreement == 1.0 and by["ann"].gold_answers == 1
    secs = sorted(a.seconds_active for answers in store.answers_for(store.item_ids("p")).values()
                  for a in answers if a.labeler == "ann")
    assert all(s <= 10.0 for s in secs)  # a client's claim is capped at the served-to-submitted time + 5 s
    assert by["ann"].median_seconds == secs[1] and by["ann"].labels_per_hour == pytest.approx(3 * 3600 / sum(secs))
