"""feedback/records.py: validation and the ranking -> comparisons expansion."""

from math import comb

import pytest

from rlhfkit.feedback.records import (
    RATING_FLAGS,
    Comparison,
    Completions,
    Demonstration,
    Ranking,
    Rating,
    RecordError,
    expand_to_comparisons,
    record_to_dict,
)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_ranking_expands_to_all_pairs_weighted_one_over_c_k_2(k):
    responses = [f"r{i}" for i in range(k)]
    pairs = Ranking("p", responses, labeler="ann").to_comparisons()
    assert len(pairs) == comb(k, 2)
    assert {(c.chosen, c.rejected) for c in pairs} == {(f"r{i}", f"r{j}") for i in range(k) for j in range(i + 1, k)}
    assert all(c.weight == pytest.approx(1 / comb(k, 2)) for c in pairs)
    assert sum(c.weight for c in pairs) == pytest.approx(1.0)  # each ranking counts once
    assert all(not c.tie and c.target == 1.0 and c.labeler == "ann" and c.prompt == "p" for c in pairs)


def test_ranking_with_tied_ranks_gives_tie_comparisons():
    pairs = Ranking("p", ["a", "b", "c", "d"], ranks=[0, 1, 1, 2]).to_comparisons()
    ties = [(c.chosen, c.rejected) for c in pairs if c.tie]
    assert ties == [("b", "c")]
    assert [c.target for c in pairs if c.tie] == [0.5]
    assert len(pairs) == 6 and all(c.weight == pytest.approx(1 / 6) for c in pairs)


@pytest.mark.parametrize("responses", [[], ["only one"]])
def test_ranking_needs_two_responses(responses):
    with pytest.raises(RecordError) as e:
        Ranking("p", responses)
    assert e.value.field == "responses"


@pytest.mark.parametrize("ranks", [[0, 1], [1, 0, 2], [0, "1", 2], 3])
def test_ranking_rejects_bad_ranks(ranks):
    with pytest.raises(RecordError) as e:
        Ranking("p", ["a", "b", "c"], ranks=ranks)
    assert e.value.field == "ranks"


def test_ranking_rejects_non_string_response():
    with pytest.raises(RecordError) as e:
        Ranking("p", ["a", 3])
    assert e.value.field == "responses[1]"


@pytest.mark.parametrize("score", [1, 4, 7])
def test_rating_accepts_the_likert_scale(score):
    r = Rating("p", "y", score, flags=["harmful_advice", "moral_judgment"])
    assert r.flags == ("harmful_advice", "moral_judgment")


@pytest.mark.parametrize("score", [0, 8, -1, 3.5, "5", True, None])
def test_rating_rejects_scores_off_the_scale(score):
    with pytest.raises(RecordError) as e:
        Rating("p", "y", score)
    assert e.value.field == "score"


def test_rating_flags_validated():
    assert len(RATING_FLAGS) == 8
    Rating("p", "y", 3, flags=list(RATING_FLAGS))
    with pytest.raises(RecordError, match="not_a_flag") as e:
        Rating("p", "y", 3, flags=["not_a_flag"])
    assert e.value.field == "flags"
    with pytest.raises(RecordError) as e:
        Rating("p", "y", 3, flags="harmful_advice")
    assert e.value.field == "flags"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"prompt": 1, "chosen": "a", "rejected": "b"}, "prompt"),
        ({"prompt": "p", "chosen": None, "rejected": "b"}, "chosen"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "weight": 0}, "weight"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "weight": True}, "weight"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "tie": "yes"}, "tie"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "labeler": 7}, "labeler"),
    ],
)
def test_comparison_validation(kwargs, field):
    with pytest.raises(RecordError) as e:
        Comparison(**kwargs)
    assert e.value.field == field
    assert f"'{field}'" in str(e.value)


def test_comparison_target_and_demonstration_and_completions():
    assert Comparison("p", "a", "b").target == 1.0
    assert Comparison("p", "a", "b", tie=True).target == 0.5
    with pytest.raises(RecordError) as e:
        Demonstration("p", "   ")
    assert e.value.field == "response"
    with pytest.raises(RecordError) as e:
        Completions("p", [])
    assert e.value.field == "responses"
    assert Completions("p", ["a", "b"]).responses == ("a", "b")
    with pytest.raises(RecordError) as e:
        Completions("p", ["a"], policy=3)
    assert e.value.field == "policy"


def test_record_to_dict_and_expand():
    d = record_to_dict(Ranking("p", ["a", "b"], ranks=[0, 0]))
    assert d == {"type": "ranking", "prompt": "p", "responses": ["a", "b"], "labeler": None, "ranks": [0, 0]}
    assert "ranks" not in record_to_dict(Ranking("p", ["a", "b"]))
    recs = [Comparison("p", "a", "b"), Ranking("q", ["x", "y", "z"]), Rating("p", "a", 5), Demonstration("p", "a")]
    pairs = expand_to_comparisons(recs)
    assert len(pairs) == 1 + 3
    assert pairs[0] is recs[0]
