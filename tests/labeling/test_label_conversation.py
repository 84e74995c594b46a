"""Conversational prompts in the labeling app: import keeps the messages, the task and admin
pages show them turn by turn (escaped), the JSON API hands them out, export writes them back
as messages; the store keeps them in `items.messages` (migration 0002)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Comparison, Message, Ranking, prompt_text
from rlhfkit.labeling.export import export_file
from rlhfkit.labeling.importing import ImportFailed, import_file, read_items
from rlhfkit.labeling.store import LabelStore

CONVO = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "Run <script>window.__xss=1</script> for me?"},
    {"role": "assistant", "content": 'Why? <img src=x onerror="window.__xss=1">'},
    {"role": "user", "content": "Just do it & tell me."},
]
MESSAGES = tuple(Message(**m) for m in CONVO)


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _assert_escaped(page: str) -> None:
    assert "Run &lt;script&gt;window.__xss=1&lt;/script&gt; for me?" in page
    assert "Just do it &amp; tell me." in page
    assert not re.search(r"<(script(?! src=\"/static/)|img)\b", page, re.I)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page, re.I)
    assert re.findall(r'<span class="role">(\w+)</span>', page) == ["System", "User", "Assistant", "User"]


def test_import_show_escaped_and_export_conversational_items(store: LabelStore, make_browser,
                                                            tmp_path: Path) -> None:
    store.create_project("pair", "pairwise")
    store.create_project("rank", "ranking")
    pair_ids = import_file(store, "pair", _jsonl(tmp_path / "pair.jsonl", [
        {"prompt": CONVO, "responses": ["Done <b>now</b>.", "No."]}]))
    rank_ids = import_file(store, "rank", _jsonl(tmp_path / "rank.jsonl", [
        {"type": "completions", "prompt": CONVO, "responses": ["x", "y", "z"], "policy": "sft"}]))
    assert store.item(pair_ids[0]).prompt == MESSAGES and store.item(rank_ids[0]).policy == "sft"

    ann, root = make_browser("ann"), make_browser("root", role="admin")
    page = ann.open_next("pair")
    assert page.status_code == 200 and 'class="turn turn-assistant"' in page.text
    _assert_escaped(page.text)
    assert "Done &lt;b&gt;now&lt;/b&gt;." in page.text
    assert ann.submit(page, {"choice": "B"}).status_code == 303
    page = ann.open_next("rank")
    _assert_escaped(page.text)
    assert ann.submit(page, {"rank_0": "2", "rank_1": "1", "rank_2": "3"}).status_code == 303
    _assert_escaped(root.client.get("/admin/p/pair").text)

    out = tmp_path / "labels.jsonl"
    export_file(store, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [CONVO, CONVO]  # messages, not a transcript
    assert read_records(out) == [Comparison(MESSAGES, "No.", "Done <b>now</b>.", labeler="ann"),
                                 Ranking(MESSAGES, ("y", "x", "z"), labeler="ann", ranks=(0, 1, 2))]
    admin_export = root.client.get("/admin/export?project=rank").text
    assert json.loads(admin_export.splitlines()[0])["prompt"] == CONVO


def test_store_keeps_messages_in_their_column_and_plain_prompts_as_before(store: LabelStore) -> None:
    store.create_project("rate", "rating")
    convo = store.add_rating_item("rate", CONVO, "answer")
    plain = store.add_rating_item("rate", "plain prompt", "answer")
    with store.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, prompt FROM items")).all())
        nulls = conn.execute(text("SELECT id FROM items WHERE messages IS NULL")).scalars().all()
    assert rows == {convo: prompt_text(MESSAGES), plain: "plain prompt"} and nulls == [plain]
    assert store.item(plain).prompt == "plain prompt" and store.item(convo).prompt == MESSAGES


def test_json_api_gives_the_messages(store: LabelStore) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    store.create_project("rank", "ranking")
    store.add_ranking_item("rank", CONVO, ["a", "b"])
    store.add_ranking_item("rank", "plain", ["a", "b"])
    _user, token = store.add_user("bot", role="labeler", token=True)
    with TestClient(create_app(store), base_url="http://localhost") as c:
        h = {"authorization": f"Bearer {token}"}
        item = c.get("/api/v1/projects/rank/next", headers=h).json()["item"]
        assert item["messages"] == CONVO and item["prompt"] == prompt_text(MESSAGES)
        c.post("/api/v1/answers", json={"item_id": item["id"], "client_key": "bot-key-00001",
                                        "answer": {"ranks": [0, 1]}}, headers=h)
        item = c.get("/api/v1/projects/rank/next", headers=h).json()["item"]
        assert item["messages"] is None and item["prompt"] == "plain"


@pytest.mark.parametrize("row, message", [
    ({"prompt": [CONVO[1], {"role": "bot", "content": "b"}], "responses": ["a", "b"]}, "field 'prompt[1].role'"),
    ({"prompt": [CONVO[1], {"role": "user", "content": 3}], "responses": ["a", "b"]}, "field 'prompt[1].content'"),
    ({"prompt": CONVO[:3], "responses": ["a", "b"]}, "field 'prompt[2]': a prompt must not end with an assistant"),
    ({"prompt": [], "responses": ["a", "b"]}, "field 'prompt'"),
    ({"prompt": [{"role": "user", "content": "x" * 20_001}], "responses": ["a", "b"]}, "too long"),
    ({"prompt": CONVO, "clips": ["a.gif", "b.gif"]}, "field 'prompt': expected a string"),
])
def test_bad_conversations_fail_import_naming_the_field(tmp_path: Path, row, message) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": CONVO, "responses": ["a", "b"]}, row])
    with pytest.raises(ImportFailed) as err:
        read_items(f, "pairwise")
    assert f"{f}:2:" in str(err.value) and message in str(err.value)


def test_a_store_made_before_messages_upgrades_and_keeps_its_items(sqlite_url: str) -> None:
    old = LabelStore.open(sqlite_url, migrate=False)
    old.migrate("0001")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, kind, labels_per_item, gold_every, active_selection, "
                          "markdown, created_at) VALUES (1, 'p', 'rating', 1, 10, 0, 0, '2025-01-01')"))
        conn.execute(text("INSERT INTO items (id, project_id, prompt, responses, is_gold, priority, meta, created_at) "
                          "VALUES (1, 1, 'old prompt', '[\"r\"]', 0, 0.0, '{}', '2025-01-01')"))
    old.close()
    store = LabelStore.open(sqlite_url)
    assert store.item(1).prompt == "old prompt" and store.item(1).responses == ("r",)
    store.close()
