"""feedback/records.py: validation, conversational prompts and the ranking -> comparisons expansion."""

from math import comb

import pytest

from rlhfkit.feedback.records import (
    RATING_FLAGS,
    Comparison,
    Completions,
    Demonstration,
    Message,
    Ranking,
    Rating,
    RecordError,
    as_messages,
    expand_to_comparisons,
    prompt_text,
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


# ---------------------------------------------------------------- conversational prompts

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]


@pytest.mark.parametrize("cls, args", [
    (Demonstration, ("r",)), (Comparison, ("a", "b")), (Ranking, (["a", "b"],)), (Rating, ("r", 4)),
    (Completions, (["a"],)),
])
def test_every_record_takes_a_conversation_as_its_prompt(cls, args):
    rec = cls(CONVO, *args)
    assert rec.prompt == (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
                          Message("user", "2+2?"))
    assert rec == cls(tuple(Message(**m) for m in CONVO), *args)  # dicts or Messages, list or tuple
    assert hash(rec) == hash(cls(CONVO, *args)) and len({rec, cls(CONVO, *args)}) == 1
    assert rec != cls(CONVO[:2], *args) and rec != cls(prompt_text(rec.prompt), *args)
    assert cls("plain", *args).prompt == "plain"


@pytest.mark.parametrize("prompt, field, message", [
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "user", "content": 3}],
     "prompt[2].content", "string"),
    ([{"role": "human", "content": "a"}], "prompt[0].role", "human"),
    ([{"content": "a"}], "prompt[0].role", "missing"),
    (["a"], "prompt[0]", "role"),
    ([{"role": "user", "content": "a", "tool_calls": [1]}], "prompt[0]", "tool_calls"),
    ([], "prompt", "at least one"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "prompt[1]", "assistant"),
    ({"role": "user", "content": "a"}, "prompt", "list of chat messages"),
    (None, "prompt", "string"),
])
def test_bad_conversations_name_the_field(prompt, field, message):
    with pytest.raises(RecordError, match=message) as e:
        Comparison(prompt, "a", "b")
    assert e.value.field == field
    assert f"field '{field}'" in str(e.value)


def test_message_validates_itself_and_null_extra_keys_are_ignored():
    with pytest.raises(RecordError) as e:
        Message("robot", "x")
    assert e.value.field == "message.role"
    with pytest.raises(RecordError) as e:
        Message("user", None)
    assert e.value.field == "message.content"
    # a table's struct column carries every key of every row; null ones mean absent
    rec = Demonstration([{"role": "user", "content": "a", "name": None}], "b")
    assert rec.prompt == (Message("user", "a"),)


def test_as_messages_and_prompt_text():
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    assert as_messages(Demonstration(CONVO, "r").prompt) == CONVO
    assert prompt_text("hi") == "hi"
    convo = Demonstration(CONVO + [{"role": "assistant", "content": "Hm."}, {"role": "tool", "content": "4"}], "r")
    assert prompt_text(convo.prompt) == ("System: Be brief.\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?"
                                         "\n\nAssistant: Hm.tool: 4\n\nAssistant:")


def test_conversational_ranking_expands_and_round_trips_through_dicts():
    rank = Ranking(CONVO, ["a", "b", "c"], labeler="ann")
    pairs = rank.to_comparisons()
    assert all(c.prompt == rank.prompt for c in pairs) and len(pairs) == 3
    d = record_to_dict(rank)
    assert d["prompt"] == CONVO and isinstance(d["prompt"], list)
    assert Ranking(**{k: v for k, v in d.items() if k != "type"}) == rank
