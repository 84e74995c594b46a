"""labeling/client.py: simulated labelers answering over the JSON API of a live server, each
acknowledged answer stored once; answers in the kinds' shapes, ranked by the gold handed in."""

from __future__ import annotations

import random

import pytest

from rlhfkit.feedback.labelers import SimulatedLabeler
from rlhfkit.labeling.client import (
    ApiError,
    _shown_ranks,
    answer_queue,
    simulated_answer,
)
from rlhfkit.labeling.kinds import NewItem
from rlhfkit.labeling.store import LabelStore

SHARP = SimulatedLabeler("sharp", temperature=0.01, flip=0.0, tie_margin=0.01)


def _gold(prompt: str, responses):  # more "good" is better
    return [r.count("good") for r in responses]


def test_a_sharp_labeler_ranks_and_chooses_by_the_gold_it_is_handed() -> None:
    judge = simulated_answer(SHARP, _gold, random.Random(0))
    item = {"kind": "ranking", "prompt": "p", "responses": ["good", "bad", "good good", "good"]}
    assert judge(item) == {"ranks": [1, 2, 0, 1]}  # equal texts tie
    assert judge({"kind": "pairwise", "prompt": "p", "responses": ["bad", "good"]}) == {"choice": "B"}
    assert judge({"kind": "pairwise", "prompt": "p", "responses": ["good", "good"]}) == {"choice": "tie"}
    with pytest.raises(ApiError, match="rating"):
        judge({"kind": "rating", "prompt": "p", "responses": ["x"]})


def test_shown_ranks_give_equal_texts_their_own_slots() -> None:
    assert _shown_ranks(["a", "b", "a"], ["a", "b", "a"], [0, 1, 2]) == [0, 1, 2]
    assert _shown_ranks(["x", "y"], ["y", "x"], None) == [1, 0]


def test_labelers_answer_the_whole_queue_over_http(store: LabelStore, live_server: str) -> None:
    store.create_project("r", "ranking")
    store.create_project("p", "pairwise")
    store.add_items("r", [NewItem(f"prompt {i}", ("good", "bad", "good good")) for i in range(5)])
    store.add_items("p", [NewItem(f"prompt {i}", ("bad", "good")) for i in range(3)])
    token = store.add_user("bot", token=True)[1]
    acks = answer_queue(live_server, "r", token, simulated_answer(SHARP, _gold, random.Random(1)))
    acks += answer_queue(live_server, "p", token, simulated_answer(SHARP, _gold, random.Random(2)), limit=2)
    assert len(acks) == 7 and not any(a.duplicate for a in acks)
    stored = {a.id: a for v in store.answers_for(store.item_ids("r") + store.item_ids("p")).values() for a in v}
    assert {a.answer_id for a in acks} == set(stored)
    assert {stored[a.answer_id].payload["ranks"] == [1, 2, 0] for a in acks[:5]} == {True}
    with pytest.raises(ApiError, match="401"):
        answer_queue(live_server, "r", "not-a-token", lambda item: {})
