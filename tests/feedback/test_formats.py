"""feedback/formats.py: every documented row shape, table round trips, errors naming file:line:field,
and atomic writes."""

import json
from pathlib import Path

import pytest

from rlhfkit.feedback.formats import (
    FormatError,
    export_preference_pairs,
    read_records,
    row_to_record,
    write_records,
    write_rows,
)
from rlhfkit.feedback.records import (
    Comparison,
    Completions,
    Demonstration,
    Message,
    Ranking,
    Rating,
    prompt_text,
    record_to_dict,
)

H, A = "\n\nHuman:", "\n\nAssistant:"


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


MIXED = [
    Demonstration("say hi", "hi"),
    Comparison("p", "good", "bad", weight=0.5, labeler="ann"),
    Comparison("p", "same", "same-ish", tie=True),
    Ranking("q", ["a", "b", "c"], labeler="bob", ranks=[0, 1, 1]),
    Ranking("q2", ["x", "y"]),
    Rating("r", "resp", 6, flags=["harmful_advice"], notes="meh", labeler="cy"),
    Completions("s", ["one", "two"], policy="sft"),
]


def test_jsonl_round_trip_of_every_record_type(tmp_path):
    path = tmp_path / "recs.jsonl"
    assert write_records(path, MIXED) == len(MIXED)
    assert read_records(path) == MIXED
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == [r.kind for r in MIXED]


def test_prompt_chosen_rejected_rows():
    rec = row_to_record({"prompt": "Q?", "chosen": "yes", "rejected": "no"})
    assert rec == Comparison("Q?", "yes", "no")
    rec = row_to_record({"prompt": "Q?", "chosen": "yes", "rejected": "no", "tie": True, "weight": 2.0})
    assert rec.tie and rec.weight == 2.0


def test_hh_transcripts_single_turn():
    chosen = f"{H} How do I bake bread?{A} Mix flour, water and yeast."
    rejected = f"{H} How do I bake bread?{A} No idea."
    rec = row_to_record({"chosen": chosen, "rejected": rejected})
    assert rec == Comparison(f"{H} How do I bake bread?{A}", " Mix flour, water and yeast.", " No idea.")


def test_hh_transcripts_multi_turn_share_the_dialogue_prefix():
    prefix = f"{H} Hi{A} Hello! How can I help?{H} Tell me a joke.{A}"
    # both replies start with the same words, so the common string prefix runs past 'Assistant:'
    rec = row_to_record({"chosen": prefix + " Why did the chicken cross?", "rejected": prefix + " Why not."})
    assert rec.prompt == prefix
    assert rec.chosen == " Why did the chicken cross?"
    assert rec.rejected == " Why not."
    # one reply a prefix of the other
    rec = row_to_record({"chosen": prefix + " Sure", "rejected": prefix + " Sure thing"})
    assert (rec.prompt, rec.chosen, rec.rejected) == (prefix, " Sure", " Sure thing")


def test_hh_transcripts_without_assistant_turn_fail():
    with pytest.raises(Exception) as e:
        row_to_record({"chosen": "hello there", "rejected": "hello you"})
    assert getattr(e.value, "field", None) == "chosen"


def test_chat_message_lists_without_prompt():
    user = {"role": "user", "content": "2+2?"}
    rec = row_to_record({
        "chosen": [user, {"role": "assistant", "content": "4"}],
        "rejected": [user, {"role": "assistant", "content": "5"}],
    })
    assert rec == Comparison((Message("user", "2+2?"),), "4", "5")
    assert prompt_text(rec.prompt) == f"{H} 2+2?{A}"  # what a model without a chat template reads, as before


def test_chat_message_lists_with_separate_prompt():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    rec = row_to_record({
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    })
    assert rec == Comparison((Message("system", "Be brief."), Message("user", "2+2?")), "4", "5")
    assert prompt_text(rec.prompt) == f"System: Be brief.{H} 2+2?{A}"


def test_chat_lists_with_different_histories_fail():
    with pytest.raises(Exception) as e:
        row_to_record({
            "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
            "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}],
        })
    assert getattr(e.value, "field", None) == "rejected"


def test_messages_demonstration():
    rec = row_to_record({"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"},
    ]})
    # multi-turn: the earlier assistant turn stays in the prompt; no leading space on the response
    assert rec == Demonstration((Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye")),
                                "Goodbye")
    assert prompt_text(rec.prompt) == f"{H} Hi{A} Hello{H} Bye{A}"


def test_plain_rating_demonstration_completions_ranking_rows():
    assert row_to_record({"prompt": "p", "response": "r", "score": 3, "flags": ["moral_judgment"]}) == Rating(
        "p", "r", 3, flags=("moral_judgment",))
    assert row_to_record({"prompt": "p", "completion": "c"}) == Demonstration("p", "c")
    assert row_to_record({"prompt": "p", "response": "c"}) == Demonstration("p", "c")
    assert row_to_record({"prompt": "p", "responses": ["a", "b"]}) == Completions("p", ("a", "b"))
    assert row_to_record({"prompt": "p", "responses": ["a", "b"], "ranks": [0, 1]}) == Ranking("p", ("a", "b"), ranks=(0, 1))


def test_community_formats_through_read_records(tmp_path):
    rows = [
        {"prompt": "Q", "chosen": "y", "rejected": "n"},
        {"chosen": f"{H} hi{A} hey", "rejected": f"{H} hi{A} go"},
        {"chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
         "rejected": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    ]
    recs = read_records(_jsonl(tmp_path / "c.jsonl", rows))
    assert [type(r) for r in recs] == [Comparison, Comparison, Comparison, Demonstration]
    with pytest.raises(FormatError, match="demonstration"):
        read_records(tmp_path / "c.jsonl", expect=Comparison)
    assert len(read_records(tmp_path / "c.jsonl", expect=(Comparison, Demonstration))) == 4


def test_parquet_round_trip(tmp_path):
    path = tmp_path / "recs.parquet"
    write_records(path, MIXED)
    assert read_records(path) == MIXED


def test_datasets_save_to_disk_round_trip(tmp_path):
    datasets = pytest.importorskip("datasets")
    from rlhfkit.feedback.records import record_to_dict

    rows = [record_to_dict(r) for r in MIXED]
    columns = list(dict.fromkeys(k for row in rows for k in row))  # a table has every column in every row
    ours = datasets.Dataset.from_list([{k: row.get(k) for k in columns} for row in rows])
    ours.save_to_disk(str(tmp_path / "ours"))
    assert read_records(tmp_path / "ours") == MIXED
    trl = datasets.Dataset.from_list([{"prompt": "Q", "chosen": "y", "rejected": "n"}] * 2)
    datasets.DatasetDict({"train": trl}).save_to_disk(str(tmp_path / "trl"))
    assert read_records(tmp_path / "trl") == [Comparison("Q", "y", "n")] * 2


def test_export_preference_pairs_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "pairs.jsonl"
    n = export_preference_pairs(path, MIXED)
    # 1 comparison (the tie is dropped) + 2 of the 3 ranking pairs (b ~ c tie dropped) + 1 pair of q2
    assert n == 4
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds[0] == {"prompt": "p", "chosen": "good", "rejected": "bad"}
    assert [(r["chosen"], r["rejected"]) for r in ds][1:] == [("a", "b"), ("a", "c"), ("x", "y")]
    assert read_records(path) == [Comparison(r["prompt"], r["chosen"], r["rejected"]) for r in ds]


@pytest.mark.parametrize(
    "line, field, message",
    [
        ('{"prompt": "p", "chosen": "a"', None, "malformed JSON"),
        ('{"prompt": "p", "chosen": "a"}', "rejected", "missing"),
        ('{"type": "comparison", "prompt": "p", "chosen": "a"}', "rejected", "missing"),
        ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "prompt", "string"),
        ('{"prompt": "p", "chosen": "a", "rejected": ["b"]}', "chosen", "list"),
        ('{"type": "comparison", "prompt": "p", "chosen": "a", "rejected": "b", "weight": "x"}', "weight", ""),
        ('{"type": "ranking", "prompt": "p", "responses": ["a"]}', "responses", "at least 2"),
        ('{"prompt": "p", "responses": ["a"], "ranks": [0]}', "responses", "at least 2"),
        ('{"type": "rating", "prompt": "p", "response": "r", "score": 9}', "score", "1-7"),
        ('{"prompt": "p", "response": "r", "score": 0}', "score", "1-7"),
        ('{"type": "rating", "prompt": "p", "response": "r", "score": 3, "flags": ["nope"]}', "flags", "nope"),
        ('{"type": "comparison", "prompt": "p", "chosen": "a", "rejected": "b", "colour": 1}', "colour", "unknown"),
        ('{"type": "comparison", "prompt": "p", "chosen": "a", "rejected": "b", "kind": "x"}', "kind", "unknown"),
        ('{"type": "vote", "prompt": "p"}', "type", "unknown"),
        ('{"text": "p"}', "prompt", "missing"),
        ('[1, 2]', "<row>", "JSON object"),
        ('{"prompt": ["m"], "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}', "chosen", ""),
        ('{"chosen": [{"role": "user", "content": "a"}], "rejected": []}', "chosen", "assistant"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, field, message):
    good = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + line + "\n" + good + "\n")  # the bad row is on line 3
    with pytest.raises(FormatError) as e:
        read_records(path)
    err = e.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert str(err).startswith(f"{path}:3:")
    if field:
        assert f"'{field}'" in str(err)
    assert message in str(err)


def test_non_utf8_line_is_a_format_error(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps({"prompt": "p", "response": "r"}).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(FormatError, match="UTF-8") as e:
        read_records(path)
    assert e.value.line == 2


def test_empty_and_missing_files(tmp_path):
    for text in ("", "\n  \n"):
        path = tmp_path / "empty.jsonl"
        path.write_text(text)
        with pytest.raises(FormatError, match="empty") as e:
            read_records(path)
        assert e.value.path == str(path)
    with pytest.raises(FormatError, match="no such file"):
        read_records(tmp_path / "absent.jsonl")


def test_failed_write_keeps_existing_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "out.jsonl"
    write_records(path, MIXED[:2])
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_rows(path, [{"ok": 1}, {"bad": object()}])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    fresh = tmp_path / "fresh.parquet"
    with pytest.raises(Exception):
        write_rows(fresh, [{"a": 1}, {"a": object()}])
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# ---------------------------------------------------------------- conversational prompts

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
CHAT = [
    Demonstration(CONVO, "4"),
    Comparison(CONVO, "4", "5", weight=0.5, labeler="ann"),
    Ranking(CONVO[:2], ["a", "b", "c"], ranks=[0, 1, 1]),
    Rating(CONVO, "4", 7, flags=["moral_judgment"]),
    Completions(CONVO[1:], ["4", "four"], policy="sft"),
]


def test_conversational_records_keep_messages_through_jsonl(tmp_path):
    path = tmp_path / "chat.jsonl"
    write_records(path, CHAT + MIXED)
    back = read_records(path)
    assert back == CHAT + MIXED
    assert all(isinstance(r.prompt, tuple) and isinstance(r.prompt[0], Message) for r in back[:len(CHAT)])
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"type": "demonstration", "prompt": CONVO, "response": "4"}


def test_conversational_records_round_trip_through_parquet(tmp_path):
    path = tmp_path / "chat.parquet"
    write_records(path, CHAT)
    assert read_records(path) == CHAT


def test_parquet_refuses_plain_and_conversational_prompts_in_one_file(tmp_path):
    path = tmp_path / "mixed.parquet"
    with pytest.raises(FormatError, match="JSONL") as e:
        write_records(path, [CHAT[1], MIXED[1]])
    assert e.value.field == "prompt" and not path.exists()


def test_multi_turn_demonstration_with_system_and_tool_turns():
    msgs = CONVO + [{"role": "assistant", "content": "Let me compute."}, {"role": "tool", "content": "4"},
                    {"role": "assistant", "content": "It is 4."}]
    rec = row_to_record({"messages": msgs})
    assert rec == Demonstration(msgs[:-1], "It is 4.")
    assert [m.role for m in rec.prompt] == ["system", "user", "assistant", "user", "assistant", "tool"]
    assert prompt_text(rec.prompt) == f"System: Be brief.{H} Hi{A} Hello!{H} 2+2?{A} Let me compute.tool: 4{A}"


def test_trl_conversational_prompt_completion_row():
    rec = row_to_record({"prompt": CONVO, "completion": [{"role": "assistant", "content": "4"}]})
    assert rec == Demonstration(CONVO, "4")


def test_conversational_preference_rows_multi_turn():
    # implicit prompt: the whole conversation on both sides
    rec = row_to_record({"chosen": CONVO + [{"role": "assistant", "content": "4"}],
                         "rejected": CONVO + [{"role": "assistant", "content": "22"}], "tie": False})
    assert rec == Comparison(CONVO, "4", "22")
    # explicit prompt: a string prompt next to message replies is refused
    with pytest.raises(Exception) as e:
        row_to_record({"prompt": "2+2?", "chosen": [{"role": "assistant", "content": "4"}],
                       "rejected": [{"role": "assistant", "content": "5"}]})
    assert getattr(e.value, "field", None) == "prompt"
    # a string prompt with string replies may also be a list of messages
    assert row_to_record({"prompt": CONVO, "chosen": "4", "rejected": "5"}) == Comparison(CONVO, "4", "5")


def test_export_conversational_pairs_in_trl_format(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "pairs.jsonl"
    assert export_preference_pairs(path, [CHAT[1], CHAT[2]]) == 1 + 2  # the b ~ c tie is dropped
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"prompt": CONVO, "chosen": [{"role": "assistant", "content": "4"}],
                       "rejected": [{"role": "assistant", "content": "5"}]}
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and ds[0]["prompt"] == CONVO
    assert read_records(path) == [Comparison(CONVO, "4", "5"), Comparison(CONVO[:2], "a", "b"),
                                  Comparison(CONVO[:2], "a", "c")]
    # string prompts are written as before, next to conversational ones
    export_preference_pairs(path, [MIXED[1], CHAT[1]])
    assert json.loads(path.read_text().splitlines()[0]) == {"prompt": "p", "chosen": "good", "rejected": "bad"}


def test_record_to_dict_writes_messages():
    d = record_to_dict(CHAT[4])
    assert d == {"type": "completions", "prompt": CONVO[1:], "responses": ["4", "four"], "policy": "sft"}
    assert row_to_record(d) == CHAT[4]


_U = '{"role": "user", "content": "u"}'
_AS = '{"role": "assistant", "content": "a"}'


@pytest.mark.parametrize(
    "line, field, message",
    [
        ('{"messages": [' + _U + ', {"role": "bot", "content": "x"}]}', "messages[1].role", "bot"),
        ('{"messages": [' + _U + ', {"role": "assistant", "content": 7}]}', "messages[1].content", "string"),
        ('{"messages": [' + _U + ', {"role": "assistant"}]}', "messages[1].content", "missing"),
        ('{"messages": ["hi", ' + _AS + ']}', "messages[0]", "role"),
        ('{"messages": [' + _U + ']}', "messages", "assistant"),
        ('{"messages": [' + _AS + ']}', "messages", "empty"),
        ('{"messages": [' + _U + ', ' + _AS + ', ' + _AS + ']}', "messages", "two assistant"),
        ('{"messages": [{"role": "user", "content": "u", "name": "x"}, ' + _AS + ']}', "messages[0]", "name"),
        ('{"prompt": [' + _U + ', ' + _U + ', {"role": "user"}], "chosen": "a", "rejected": "b"}',
         "prompt[2].content", "missing"),
        ('{"type": "comparison", "prompt": [' + _U + ', ' + _AS + '], "chosen": "a", "rejected": "b"}',
         "prompt[1]", "assistant"),
        ('{"type": "rating", "prompt": [], "response": "r", "score": 3}', "prompt", "at least one"),
        ('{"chosen": [' + _U + ', ' + _AS + '], "rejected": [' + _U + ', {"role": "assistant", "content": []}]}',
         "rejected[1].content", "string"),
    ],
)
def test_bad_messages_name_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": json.loads(f"[{_U}, {_AS}]")}) + "\n" + line + "\n")
    with pytest.raises(FormatError) as e:
        read_records(path)
    assert (e.value.line, e.value.field) == (2, field)
    assert f"{path}:2: field '{field}':" in str(e.value) and message in str(e.value)
