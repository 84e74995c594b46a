"""`label import` (validation, all-or-nothing, splitting by kind, clips, URLs) and
`label export` (records that `read_records` and so `rlhfkit rm --data` read back)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Comparison, Ranking, Rating
from rlhfkit.labeling.export import collect_records, export_file
from rlhfkit.labeling.importing import ImportFailed, import_file, read_items
from rlhfkit.labeling.store import LabelStore


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_imports_sample_output_and_plain_rows(store: LabelStore, tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "s.jsonl", [
        {"type": "completions", "prompt": "p1", "responses": ["a", "b", "c"], "policy": "sft"},
        {"prompt": "p2", "responses": ["d", "e"]},
        {"prompt": "p3", "responses": ["f", "g"], "gold": {"ranks": [1, 0]}, "meta": {"source": "x"}},
    ])
    store.create_project("r", "ranking")
    ids = import_file(store, "r", f)
    items = [store.item(i) for i in ids]
    assert [it.responses for it in items] == [("a", "b", "c"), ("d", "e"), ("f", "g")]
    assert items[0].policy == "sft" and items[2].is_gold and items[2].gold == {"ranks": [1, 0]}
    assert items[2].meta == {"source": "x"}


def test_rows_are_split_by_kind(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "responses": ["a", "b", "c", "d"]}])
    assert len(read_items(f, "ranking")) == 1
    pairs = read_items(f, "pairwise")
    assert [it.responses for it in pairs][:3] == [("a", "b"), ("a", "c"), ("a", "d")] and len(pairs) == 6
    assert pairs[5].meta == {"responses_index": [2, 3]}
    assert [it.responses for it in read_items(f, "rating")] == [("a",), ("b",), ("c",), ("d",)]
    one = _jsonl(tmp_path / "one.jsonl", [{"prompt": "p", "response": "only"}])
    assert [it.responses for it in read_items(one, "rating")] == [("only",)]


@pytest.mark.parametrize("row, kind, message", [
    ("{not json", "ranking", "malformed JSON"),
    ({"prompt": "p"}, "ranking", "field 'responses': missing"),
    ({"prompt": "p", "responses": ["a"]}, "ranking", "K = 2..9"),
    ({"prompt": "p", "responses": list("abcdefghij")}, "ranking", "K = 2..9"),
    ({"prompt": "p", "responses": list("abcdefghij")}, "rating", "1..9"),
    ({"prompt": "p", "responses": ["a", 3]}, "ranking", "responses[1]"),
    ({"prompt": "x" * 20_001, "responses": ["a", "b"]}, "ranking", "too long"),
    ({"prompt": "p", "responses": ["a", "b"], "gold": {"ranks": [0]}}, "ranking", "field 'gold'"),
    ({"prompt": "p", "responses": ["a", "b", "c"], "gold": {"choice": "A"}}, "pairwise", "one pairwise item"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "ranking", "field 'responses'"),
    ({"prompt": "p", "clips": ["a.gif", "b.gif"]}, "ranking", "clips are for pairwise"),
    ({"prompt": "p", "clips": ["https://example.com/a.mp4", "b.gif"]}, "pairwise", "import from URLs is off"),
    ({"prompt": "p", "clips": ["missing.gif", "b.gif"]}, "pairwise", "no such file"),
    ([1, 2], "ranking", "expected a JSON object"),
])
def test_bad_rows_fail_with_file_line_field_and_import_nothing(store: LabelStore, tmp_path: Path, row, kind,
                                                               message) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "responses": ["a", "b"]}, row])
    store.create_project("p", kind)
    with pytest.raises(ImportFailed) as err:
        import_file(store, "p", f)
    assert f"{f}:2:" in str(err.value) and message in str(err.value) and "nothing was imported" in str(err.value)
    assert store.item_ids("p") == []


def test_every_bad_row_is_reported(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", ["{", {"prompt": "p", "responses": ["a"]}, {"prompt": "p"}])
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9", "responses": ["a", "b"]}\n')
    with pytest.raises(ImportFailed) as err:
        read_items(f, "ranking")
    assert len(err.value.errors) == 3 and [e.line for e in err.value.errors] == [1, 2, 3]
    with pytest.raises(ImportFailed, match="not UTF-8"):
        read_items(tmp_path / "latin1.jsonl", "ranking")


def test_clips_are_read_and_typed_by_content(store: LabelStore, tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.gif").write_bytes(b"GIF89a" + bytes(10))
    (tmp_path / "clips" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10))
    (tmp_path / "clips" / "page.mp4").write_bytes(b"<!doctype html><script>alert(1)</script>")
    good = _jsonl(tmp_path / "c.jsonl", [{"prompt": "which?", "clips": ["clips/a.gif", "clips/b.png"]}])
    bad = _jsonl(tmp_path / "d.jsonl", [{"prompt": "which?", "clips": ["clips/a.gif", "clips/page.mp4"]}])
    store.create_project("c", "pairwise")
    (item,) = import_file(store, "c", good)
    assert [m.content_type for m in store.item(item).media] == ["image/gif", "image/png"]
    with pytest.raises(ImportFailed, match="not a GIF"):
        import_file(store, "c", bad)


def test_urls_are_fetched_only_when_allowed(store: LabelStore, tmp_path: Path) -> None:
    (tmp_path / "a.gif").write_bytes(b"GIF89a" + bytes(10))
    (tmp_path / "b.gif").write_bytes(b"GIF87a" + bytes(10))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        f = _jsonl(tmp_path / "u.jsonl", [{"prompt": "p", "clips": [f"{base}/a.gif", f"{base}/b.gif"]}])
        store.create_project("u", "pairwise")
        with pytest.raises(ImportFailed, match="URLs is off"):
            import_file(store, "u", f)
        (item,) = import_file(store, "u", f, allow_urls=True)
        assert len(store.item(item).media) == 2
    finally:
        server.shutdown()


def _answer_all(store: LabelStore, project: str, user, answers: list[dict]) -> None:
    for n, payload in enumerate(answers):
        item = store.next_item(project, user)
        store.submit(user, item.id, f"{user.username}-{project}-{n:04d}", payload, seconds_active=2.0)


def test_export_writes_records_that_read_back(any_store: LabelStore, tmp_path: Path) -> None:
    ann = any_store.add_user("ann", "password123")[0]
    any_store.create_project("rank", "ranking")
    any_store.create_project("pair", "pairwise")
    any_store.create_project("rate", "rating")
    any_store.add_ranking_item("rank", "q", ["a", "b", "c"])
    for n in range(3):
        any_store.add_pairwise_item("pair", f"q{n}", text_a="A text", text_b="B text")
    any_store.add_rating_item("rate", "q", "resp")
    _answer_all(any_store, "rank", ann, [{"ranks": [2, 0, 0]}])
    _answer_all(any_store, "pair", ann, [{"choice": "B"}, {"choice": "tie"}, {"choice": "cant_tell"}])
    _answer_all(any_store, "rate", ann, [{"score": 2, "flags": ["harmful_advice"], "notes": "n"}])
    out = tmp_path / "labels.jsonl"
    summary = export_file(any_store, out)
    assert summary.records == 4 and summary.answers == 5
    recs = read_records(out)
    ranking, b_wins, tie, rating = recs
    assert isinstance(ranking, Ranking) and ranking.responses == ("b", "c", "a") and ranking.ranks == (0, 0, 1)
    assert ranking.labeler == "ann" and ranking.meta["project"] == "rank" and ranking.meta["seconds"] == 2.0
    assert isinstance(b_wins, Comparison) and (b_wins.chosen, b_wins.rejected, b_wins.tie) == ("B text", "A text", False)
    assert isinstance(tie, Comparison) and tie.tie
    assert isinstance(rating, Rating) and (rating.score, rating.flags, rating.notes) == (2, ("harmful_advice",), "n")


def test_export_leaves_out_gold_items_and_labelers_below_threshold(store: LabelStore) -> None:
    ann, bob = store.add_user("ann", "password123")[0], store.add_user("bob", "password123")[0]
    store.create_project("p", "pairwise", labels_per_item=2, gold_every=1)
    store.add_pairwise_item("p", "q", text_a="a", text_b="b")
    store.add_pairwise_item("p", "g", text_a="a", text_b="b", gold={"choice": "A"})
    _answer_all(store, "p", ann, [{"choice": "A"}, {"choice": "A"}])  # regular, then gold: right
    _answer_all(store, "p", bob, [{"choice": "B"}, {"choice": "B"}])  # regular, then gold: wrong
    everyone = collect_records(store, "p")
    assert sorted(r.labeler for r in everyone) == ["ann", "bob"]  # the gold item is not exported
    kept = collect_records(store, "p", min_gold_agreement=0.5)
    assert [r.labeler for r in kept] == ["ann"]
