"""`rlhfkit label export --format trl`: TRL's `prompt/chosen/rejected` rows, which
`datasets.load_dataset("json", ...)` and TRL's DPOTrainer read as they are and `rlhfkit rm`
trains on; rankings as their strict pairs, ties, "can't tell" and ratings left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Comparison, Message, Ranking, expand_to_comparisons
from rlhfkit.labeling.export import export_file
from rlhfkit.labeling.store import LabelStore

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"}]


def _answer_all(store: LabelStore, project: str, user, answers: list[dict]) -> None:
    for n, payload in enumerate(answers):
        item = store.next_item(project, user)
        store.submit(user, item.id, f"{user.username}-{project}-{n:04d}", payload, seconds_active=2.0)


def _labelled_store(db: str) -> LabelStore:
    """Rankings (one with a tie), pairwise A / B / tie / can't tell, and a rating."""
    store = LabelStore.open(db)
    ann = store.add_user("ann", "password123")[0]
    store.create_project("rank", "ranking")
    store.create_project("pair", "pairwise")
    store.create_project("rate", "rating")
    store.add_ranking_item("rank", "q1", ["a", "b", "c", "d"])
    store.add_ranking_item("rank", "q2", ["x", "y", "z"])
    for n in range(4):
        store.add_pairwise_item("pair", f"p{n}", text_a=f"A{n}", text_b=f"B{n}")
    store.add_rating_item("rate", "r", "resp")
    # q1: b best, a ~ d tied, c worst; q2: y > z > x
    _answer_all(store, "rank", ann, [{"ranks": [1, 0, 2, 1]}, {"ranks": [2, 0, 1]}])
    _answer_all(store, "pair", ann, [{"choice": "A"}, {"choice": "B"}, {"choice": "tie"}, {"choice": "cant_tell"}])
    _answer_all(store, "rate", ann, [{"score": 6, "flags": [], "notes": ""}])
    return store


EXPECTED = [  # by hand: each ranking's strict pairs in best-to-worst order, then A and B answers
    ("q1", "b", "a"), ("q1", "b", "d"), ("q1", "b", "c"), ("q1", "a", "c"), ("q1", "d", "c"),  # a ~ d left out
    ("q2", "y", "z"), ("q2", "y", "x"), ("q2", "z", "x"),
    ("p0", "A0", "B0"), ("p1", "B1", "A1"),  # p2 (tie) and p3 (can't tell) left out
]


def _rm_pairs(path: Path) -> list[Comparison]:
    """What `rlhfkit rm --data` trains on (algos/reward_model.py: read, then expand rankings)."""
    return expand_to_comparisons(read_records(path, expect=(Comparison, Ranking)))


def test_trl_export_rows_by_hand_and_read_back(tmp_path: Path, capsys) -> None:
    datasets = pytest.importorskip("datasets")
    db, out = str(tmp_path / "l.db"), tmp_path / "pairs.jsonl"
    _labelled_store(db).close()
    assert main(["label", "export", "--db", db, "--out", str(out), "--format", "trl"]) == 0
    err = capsys.readouterr().err
    assert "wrote 10 prompt/chosen/rejected rows" in err
    assert "left out: rating: 1, tied comparison: 1, tied ranking pair: 1" in err
    assert "1 answers said \"can't tell\"" in err

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == EXPECTED
    assert all(list(r) == ["prompt", "chosen", "rejected"] for r in rows)

    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 10
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in ds] == EXPECTED

    # rm reads the file into the same comparisons as our format's non-tied pairs (the TRL format has
    # no weight or labeler: each pair counts once there, where ours weights a ranking's pairs 1/C(K, 2))
    trl = _rm_pairs(out)
    assert trl == [Comparison(*t) for t in EXPECTED]
    ours = tmp_path / "ours.jsonl"
    assert main(["label", "export", "--db", db, "--out", str(ours)]) == 0
    assert json.loads(ours.read_text().splitlines()[0])["type"] == "ranking"  # the default is unchanged
    ours_pairs = expand_to_comparisons(read_records(ours))  # ours holds the rating too
    assert [(c.prompt, c.chosen, c.rejected) for c in ours_pairs if not c.tie] == EXPECTED


def test_summary_counts_what_was_left_out(tmp_path: Path) -> None:
    store = _labelled_store(str(tmp_path / "l.db"))
    summary = export_file(store, tmp_path / "pairs.jsonl", format="trl")
    assert (summary.rows, summary.records, summary.answers, summary.no_judgment) == (10, 6, 7, 1)
    assert summary.skipped == {"tied ranking pair": 1, "tied comparison": 1, "rating": 1}
    only_ratings = export_file(store, tmp_path / "none.jsonl", project="rate", format="trl")
    assert only_ratings.rows == 0 and only_ratings.skipped == {"rating": 1}
    store.close()


def test_conversational_prompts_round_trip(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    store = LabelStore.open(str(tmp_path / "l.db"))
    ann = store.add_user("ann", "password123")[0]
    store.create_project("chat", "ranking")
    store.add_ranking_item("chat", CONVO, ["6.", "six", "7."])
    _answer_all(store, "chat", ann, [{"ranks": [0, 0, 1]}])  # "6." ~ "six" tied, both beat "7."
    out = tmp_path / "chat.jsonl"
    assert export_file(store, out, format="trl").rows == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"prompt": CONVO, "chosen": [{"role": "assistant", "content": "6."}],
                       "rejected": [{"role": "assistant", "content": "7."}]}
    ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and ds[0]["prompt"] == CONVO
    messages = tuple(Message(**m) for m in CONVO)
    assert _rm_pairs(out) == [Comparison(messages, "6.", "7."), Comparison(messages, "six", "7.")]

    # plain and conversational prompts cannot share a column: refused, and nothing is written
    store.create_project("plain", "pairwise")
    store.add_pairwise_item("plain", "q", text_a="a", text_b="b")
    _answer_all(store, "plain", ann, [{"choice": "A"}])
    store.close()
    before = out.read_bytes()
    assert main(["label", "export", "--db", str(tmp_path / "l.db"), "--out", str(out), "--format", "trl"]) == 2
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert main(["label", "export", "--db", str(tmp_path / "l.db"), "--out", str(out), "--format", "trl",
                 "--project", "chat"]) == 0


@pytest.mark.timeout(600)
def test_rm_trains_on_the_trl_export(tmp_path: Path, tiny_lm: Path) -> None:
    db, out = str(tmp_path / "l.db"), tmp_path / "pairs.jsonl"
    _labelled_store(db).close()
    assert main(["label", "export", "--db", db, "--out", str(out), "--format", "trl"]) == 0
    assert main(["rm", "--model", str(tiny_lm), "--data", str(out), "--out", str(tmp_path / "rm"),
                 "--set", "optim.max_steps=2", "--set", "optim.batch_size=4", "--set", "heldout_frac=0.3",
                 "--task", "none"]) == 0
    summary = json.loads((tmp_path / "rm" / "summary.json").read_text())
    assert summary["train_examples"] > 0 and (tmp_path / "rm" / "final").is_dir()
