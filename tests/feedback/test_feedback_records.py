"""Unpaired binary feedback (KTO's data, Ethayarajh et al. 2024): the `Feedback` record, the
`to_feedback` conversions from ratings, comparisons and rankings, our JSONL round trip and
TRL's unpaired rows {prompt, completion, label}."""

from __future__ import annotations

import json

import pytest

from rlhfkit.feedback.formats import (
    FormatError,
    read_records,
    row_to_record,
    write_records,
)
from rlhfkit.feedback.records import (
    Comparison,
    Demonstration,
    Feedback,
    Message,
    Ranking,
    Rating,
    RecordError,
    record_to_dict,
    to_feedback,
)

CONVO = (Message("system", "Be brief."), Message("user", "2+2?"))


def test_feedback_validates_its_fields_and_names_them():
    with pytest.raises(RecordError) as e:
        Feedback("p", "r", "yes")
    assert e.value.field == "desirable" and "'yes'" in str(e.value)
    with pytest.raises(RecordError) as e:
        Feedback("p", "r", 1)  # an int is not a bool: 1/0 labels must be said as true/false
    assert e.value.field == "desirable"
    with pytest.raises(RecordError) as e:
        Feedback("p", 3, True)
    assert e.value.field == "response"
    with pytest.raises(RecordError) as e:
        Feedback(None, "r", True)
    assert e.value.field == "prompt"
    with pytest.raises(RecordError) as e:
        Feedback("p", "r", False, labeler=7)
    assert e.value.field == "labeler"
    with pytest.raises(RecordError) as e:
        Feedback([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}], "r", True)
    assert e.value.field == "prompt[1].role"


def test_feedback_keeps_a_conversation_as_messages():
    f = Feedback([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "4", True)
    assert f.prompt == CONVO


def test_ratings_are_desirable_at_or_above_the_threshold():
    ratings = [Rating("p", f"r{s}", s, labeler="ann") for s in range(1, 8)]
    out = to_feedback(ratings)  # default threshold 5
    assert [(f.response, f.desirable) for f in out] == [(f"r{s}", s >= 5) for s in range(1, 8)]
    assert all(f.prompt == "p" and f.labeler == "ann" for f in out)
    assert [f.desirable for f in to_feedback(ratings, threshold=7)] == [False] * 6 + [True]
    assert [f.desirable for f in to_feedback(ratings, threshold=1)] == [True] * 7


def test_a_rating_without_a_score_is_skipped():
    form_only = Rating("p", "r", None, answers={"helpful": "yes"})
    assert to_feedback([form_only, Rating("p", "s", 6)]) == [Feedback("p", "s", True)]


def test_comparisons_give_a_desirable_and_an_undesirable_record_ties_none():
    out = to_feedback([Comparison("p", "good", "bad", labeler="bob", meta={"id": 1}),
                       Comparison("q", "x", "y", tie=True)])
    assert out == [Feedback("p", "good", True, "bob"), Feedback("p", "bad", False, "bob")]
    assert out[0].meta == {"id": 1}


def test_rankings_give_their_best_and_worst_only():
    out = to_feedback([Ranking(CONVO, ["best", "mid", "worst"], labeler="cy")])
    assert out == [Feedback(CONVO, "best", True, "cy"), Feedback(CONVO, "worst", False, "cy")]
    # best and worst tied: the ranking says nothing about either alone
    assert to_feedback([Ranking("p", ["a", "b", "c"], ranks=[0, 0, 0])]) == []
    # ties inside are fine as long as the ends differ
    tied_mid = to_feedback([Ranking("p", ["a", "b", "c", "d"], ranks=[0, 0, 1, 1])])
    assert [(f.response, f.desirable) for f in tied_mid] == [("a", True), ("d", False)]


def test_feedback_passes_through_and_demonstrations_are_skipped():
    f = Feedback("p", "r", False)
    assert to_feedback([f, Demonstration("p", "a demo")]) == [f]
    assert to_feedback([]) == []


def test_jsonl_round_trip(tmp_path):
    records = [Feedback("p", "yes please", True), Feedback("q", "no thanks", False, labeler="ann"),
               Feedback(CONVO, "4", True, meta={"source": "app"})]
    path = tmp_path / "fb.jsonl"
    assert write_records(path, records) == 3
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"type": "feedback", "prompt": "p", "response": "yes please", "desirable": True}
    assert rows[1]["labeler"] == "ann" and "labeler" not in rows[0]  # None labelers are left out
    assert rows[2]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    back = read_records(path, expect=Feedback)
    assert back == records and back[2].meta == {"source": "app"}


def test_record_to_dict_of_feedback_reads_back():
    f = Feedback("p", "r", False, labeler="z")
    assert row_to_record(record_to_dict(f)) == f


def test_converted_records_round_trip(tmp_path):
    recs = to_feedback([Rating("p", "r", 6), Comparison("q", "a", "b"), Ranking("s", ["x", "y"])])
    path = tmp_path / "conv.jsonl"
    write_records(path, recs)
    assert read_records(path) == recs


def test_trl_unpaired_rows_read_as_feedback():
    assert row_to_record({"prompt": "p", "completion": "c", "label": True}) == Feedback("p", "c", True)
    assert row_to_record({"prompt": "p", "completion": "c", "label": False}) == Feedback("p", "c", False)
    chat = {"prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "4"}], "label": True}
    assert row_to_record(chat) == Feedback((Message("user", "2+2?"),), "4", True)


def test_bad_feedback_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"type": "feedback", "prompt": "p", "response": "r", "desirable": True}) + "\n"
                    + json.dumps({"type": "feedback", "prompt": "p", "response": "r", "desirable": "yes"}) + "\n")
    with pytest.raises(FormatError) as e:
        read_records(path)
    assert e.value.line == 2 and e.value.field == "desirable" and str(path) in str(e.value)
    path.write_text(json.dumps({"type": "feedback", "prompt": "p", "response": "r"}) + "\n")
    with pytest.raises(FormatError) as e:
        read_records(path)
    assert e.value.field == "desirable" and "missing" in str(e.value)
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "label": "yes"}) + "\n")
    with pytest.raises(FormatError) as e:
        read_records(path)
    assert e.value.line == 1 and "'yes'" in str(e.value)


def test_empty_feedback_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(FormatError, match="no records"):
        read_records(path, expect=Feedback)
