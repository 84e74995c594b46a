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
from rlhfkit.feedback.records import Comparison, Completions, Demonstration, Ranking, Rating

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
    assert rec == Comparison(f"{H} 2+2?{A}", " 4", " 5")


def test_chat_message_lists_with_separate_prompt():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    rec = row_to_record({
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    })
    assert rec == Comparison(f"System: Be brief.{H} 2+2?{A}", " 4", " 5")


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
    assert rec == Demonstration(f"{H} Hi{A} Hello{H} Bye{A}", " Goodbye")


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
