"""The thumbs kind (kind_thumbs.py): one response, thumbs up or down (KTO's unpaired binary
feedback). Answers checked, records made, import -> answers over the HTTP API -> export read
back as Feedback records (and as TRL's unpaired rows), gold agreement and nominal alpha,
model text escaped on every page, and a labeler answering by keyboard in a real Chromium."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_label_api import XSS  # tests/labeling is on sys.path
from test_label_browser import _page, _sign_in

from rlhfkit.cli import main
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Feedback, Message
from rlhfkit.labeling.export import collect_records, export_file
from rlhfkit.labeling.importing import ImportFailed, read_items
from rlhfkit.labeling.kind_thumbs import ThumbsKind
from rlhfkit.labeling.kinds import (
    KIND_OBJECTS,
    AnswerError,
    NewItem,
    gold_agreement,
    judgments,
    to_records,
    validate_answer,
)
from rlhfkit.labeling.quality import project_quality
from rlhfkit.labeling.store import LabelStore

PASSWORD = "correct horse battery"
CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime."}]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- the kind object

def test_the_kind_is_registered_with_one_response_and_a_nominal_alpha() -> None:
    kind = KIND_OBJECTS["thumbs"]
    assert isinstance(kind, ThumbsKind) and kind.template == "task_thumbs.html"
    assert (kind.item_k, kind.alpha_metric, kind.gold_answers) == ((1, 1), "nominal", True)
    assert kind.split(3) == [(0,), (1,), (2,)]


@pytest.mark.parametrize("thumb", ["up", "down", "cant_tell"])
def test_answers_are_accepted(thumb: str) -> None:
    assert validate_answer("thumbs", 1, {"thumb": thumb}) == {"thumb": thumb}


@pytest.mark.parametrize("payload", [{}, {"thumb": "UP"}, {"thumb": True}, {"thumb": 1}, {"thumb": None},
                                     {"choice": "A"}, {"thumb": ["up"]}])
def test_bad_answers_are_refused(payload: dict) -> None:
    with pytest.raises(AnswerError, match="thumb: expected up, down or cant_tell"):
        validate_answer("thumbs", 1, payload)


def test_records_judgments_and_gold_agreement() -> None:
    up = to_records("thumbs", "Name a prime.", ["7"], {"thumb": "up"}, "ann", {"item": 1})
    down = to_records("thumbs", CONVO, ["9"], {"thumb": "down"}, "bob", {})
    assert up == [Feedback("Name a prime.", "7", True, labeler="ann")] and up[0].meta == {"item": 1}
    assert down == [Feedback(CONVO, "9", False, labeler="bob")]
    assert down[0].prompt == (Message("system", "Be brief."), Message("user", "Name a prime."))
    assert to_records("thumbs", "p", ["r"], {"thumb": "cant_tell"}, "ann", {}) == []  # no judgment
    assert judgments("thumbs", {"thumb": "up"}) == [(None, "up")]
    assert judgments("thumbs", {"thumb": "cant_tell"}) == []
    assert gold_agreement("thumbs", {"thumb": "down"}, {"thumb": "down"}) == 1.0
    assert gold_agreement("thumbs", {"thumb": "up"}, {"thumb": "down"}) == 0.0


# ---------------------------------------------------------------- import

def test_import_rows_one_response_each(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "t.jsonl", [
        {"prompt": "Name a prime.", "response": "7", "gold": {"thumb": "up"}},
        {"prompt": CONVO, "responses": ["2", "4", "5"], "meta": {"src": "x"}},
        {"type": "completions", "prompt": "Say hi.", "responses": ["hi"], "policy": "sft-1"},
    ])
    items = read_items(f, "thumbs")
    assert [i.responses for i in items] == [("7",), ("2",), ("4",), ("5",), ("hi",)]
    assert items[0].gold == {"thumb": "up"} and items[1].gold is None
    assert items[2].meta == {"src": "x", "responses_index": [1]} and items[4].policy == "sft-1"
    assert items[1].prompt[1].content == "Name a prime."


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p"}, "field 'responses': missing"),
    ({"prompt": "p", "responses": ["a", "b"], "gold": {"thumb": "up"}}, "one thumbs item"),
    ({"prompt": "p", "response": "r", "gold": {"thumb": "sideways"}}, "field 'gold': thumb: expected"),
    ({"prompt": "p", "responses": [f"r{i}" for i in range(10)]}, "1..9 responses"),
    ({"prompt": "p", "clips": ["a.gif", "b.gif"]}, "clips are for pairwise projects"),
])
def test_bad_rows_fail_naming_the_field(tmp_path: Path, row: dict, message: str) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine", "response": "ok"}, row])
    with pytest.raises(ImportFailed) as err:
        read_items(f, "thumbs")
    assert f"{f}:2:" in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------- import -> HTTP API -> export

def test_cli_import_api_answers_then_export_reads_back_as_feedback(tmp_path: Path, capsys) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    db = str(tmp_path / "l.db")
    rows = _jsonl(tmp_path / "samples.jsonl", [{"prompt": "Name a prime.", "responses": ["7", "9"]},
                                               {"prompt": "Say hi.", "response": "<b>hi</b>"}])
    assert main(["label", "import", str(rows), "--db", db, "--project", "thumbs", "--kind", "thumbs",
                 "--labels-per-item", "2"]) == 0
    store = LabelStore.open(db)
    assert store.project("thumbs").kind == "thumbs" and len(store.item_ids("thumbs")) == 3
    client = TestClient(create_app(store), base_url="http://localhost")
    answers = {"ann": ["up", "down", "cant_tell"], "bob": ["up", "up", "down"]}
    for name, thumbs in answers.items():
        h = {"authorization": f"Bearer {store.add_user(name, role='labeler', token=True)[1]}"}
        for n, thumb in enumerate(thumbs):
            item = client.get("/api/v1/projects/thumbs/next", headers=h).json()["item"]
            assert item["kind"] == "thumbs" and len(item["responses"]) == 1
            bad = {"item_id": item["id"], "client_key": f"{name}-bad-{n:04d}", "answer": {"thumb": "meh"}}
            r = client.post("/api/v1/answers", json=bad, headers=h)
            assert r.status_code == 400 and "thumb: expected" in r.json()["error"]
            body = {"item_id": item["id"], "client_key": f"{name}-key-{n:04d}", "answer": {"thumb": thumb},
                    "seconds_active": 2.0}
            assert client.post("/api/v1/answers", json=body, headers=h).status_code == 200
        assert client.get("/api/v1/projects/thumbs/next", headers=h).json() == {"item": None}
    client.close()
    q = project_quality("thumbs", store.items_with_answers("thumbs"))
    assert q.answers == 6 and q.pairwise_agreement == 0.5  # item 1 alike, item 2 not, item 3 one judgment
    store.close()

    out = tmp_path / "feedback.jsonl"
    capsys.readouterr()
    assert main(["label", "export", "--db", db, "--out", str(out)]) == 0
    assert "1 answers said \"can't tell\"" in capsys.readouterr().err
    first = json.loads(out.read_text().splitlines()[0])
    assert first["type"] == "feedback" and first["desirable"] is True and first["meta"]["project"] == "thumbs"
    got = read_records(out, expect=Feedback)  # what `rlhfkit kto --data` reads
    assert [(f.prompt, f.response, f.desirable, f.labeler) for f in got] == [
        ("Name a prime.", "7", True, "ann"), ("Name a prime.", "7", True, "bob"),
        ("Name a prime.", "9", False, "ann"), ("Name a prime.", "9", True, "bob"),
        ("Say hi.", "<b>hi</b>", False, "bob")]

    trl = tmp_path / "trl.jsonl"
    assert main(["label", "export", "--db", db, "--out", str(trl), "--format", "trl"]) == 0
    assert "wrote 5 prompt/completion/label rows" in capsys.readouterr().err
    lines = [json.loads(x) for x in trl.read_text().splitlines()]
    assert lines[2] == {"prompt": "Name a prime.", "completion": "9", "label": False}
    assert all(list(r) == ["prompt", "completion", "label"] for r in lines)
    assert [(f.prompt, f.response, f.desirable) for f in read_records(trl, expect=Feedback)] == [
        (f.prompt, f.response, f.desirable) for f in got]


def test_trl_export_conversations_and_no_mix_with_pairs(store: LabelStore, tmp_path: Path) -> None:
    store.create_project("thumbs", "thumbs")
    store.create_project("pair", "pairwise")
    store.add_items("thumbs", [NewItem(CONVO, ("7",))])
    store.add_pairwise_item("pair", "q", text_a="a", text_b="b")
    ann = store.add_user("ann", PASSWORD)[0]
    for project, answer in (("thumbs", {"thumb": "up"}), ("pair", {"choice": "A"})):
        store.submit(ann, store.next_item(project, ann).id, f"ann-{project}-0001", answer)
    out = tmp_path / "kto.jsonl"
    summary = export_file(store, out, "thumbs", format="trl")
    assert (summary.rows, summary.columns) == (1, "prompt/completion/label")
    row = json.loads(out.read_text())
    assert row == {"prompt": CONVO, "completion": [{"role": "assistant", "content": "7"}], "label": True}
    assert read_records(out, expect=Feedback) == [Feedback(CONVO, "7", True)]
    from rlhfkit.errors import UserError

    with pytest.raises(UserError, match="cannot share a file"):
        export_file(store, tmp_path / "both.jsonl", format="trl")
    assert not (tmp_path / "both.jsonl").exists()


# ---------------------------------------------------------------- gold

def test_gold_agreement_and_the_min_gold_agreement_export(any_store: LabelStore) -> None:
    store = any_store  # SQLite, and PostgreSQL where one is configured
    store.create_project("thumbs", "thumbs", labels_per_item=2)
    store.add_items("thumbs", [NewItem("Name a prime.", ("7",)), NewItem("Name a prime.", ("8",)),
                               NewItem("2+2?", ("4",), gold={"thumb": "up"}),
                               NewItem("2+2?", ("5",), gold={"thumb": "down"})])
    for name, thumbs in (("ann", ["up", "down", "up", "down"]), ("bob", ["up", "up", "up", "up"])):
        user = store.add_user(name, PASSWORD)[0]
        for n, thumb in enumerate(thumbs):
            item = store.next_item("thumbs", user)
            store.submit(user, item.id, f"{name}-gold-{n:04d}", {"thumb": thumb}, seconds_active=1.0)
    q = project_quality("thumbs", store.items_with_answers("thumbs"))
    assert {s.labeler: (s.gold_answers, s.gold_agreement) for s in q.labelers} == {"ann": (2, 1.0), "bob": (2, 0.5)}
    assert q.pairwise_agreement == 0.5  # "7" and "4" judged alike, "8" and "5" not
    records = collect_records(store, "thumbs")  # gold items are left out
    assert [(r.response, r.desirable, r.labeler) for r in records] == [
        ("7", True, "ann"), ("7", True, "bob"), ("8", False, "ann"), ("8", True, "bob")]
    assert [r.labeler for r in collect_records(store, "thumbs", min_gold_agreement=0.75)] == ["ann", "ann"]


# ---------------------------------------------------------------- the page

@pytest.mark.parametrize("markdown", [False, True])
def test_model_text_is_escaped_on_the_task_and_admin_pages(store: LabelStore, make_browser, markdown: bool) -> None:
    store.create_project("thumbs", "thumbs", markdown=markdown)
    convo = [{"role": "system", "content": XSS[2]}, {"role": "user", "content": XSS[8]}]
    store.add_items("thumbs", [NewItem(XSS[0] + XSS[6], (XSS[1] + XSS[5] + XSS[9],)),
                               NewItem(convo, (XSS[3] + XSS[4] + XSS[7],))])
    admin = make_browser("root", role="admin")
    pages = []
    for n in range(2):
        page = admin.open_next("thumbs")
        assert 'data-kind="thumbs"' in page.text and 'name="thumb" value="up"' in page.text
        pages.append(page.text)
        r = admin.submit(page, {})
        assert r.status_code == 400 and "thumb: expected up, down or cant_tell" in r.text
        pages.append(r.text)
        assert admin.submit(page, {"thumb": ("up", "down")[n]}).status_code == 303
    pages.append(admin.client.get("/admin/p/thumbs").text)
    for text in pages:
        assert "window.__xss" in html.unescape(text)  # shown, as text
        assert not re.search(r"<(script(?! src=\"/static/)|img|svg|iframe|object|embed)\b", text, re.I)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text, re.I)  # no event-handler attribute in any tag
        assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", text, re.I)
    assert "{{ 7*7 }}" in html.unescape(pages[0])  # a template in model text is text, not evaluated
    ids = store.item_ids("thumbs")
    got = store.answers_for(ids)
    assert [got[i][0].payload for i in ids] == [{"thumb": "up"}, {"thumb": "down"}]


def test_thumbs_by_keyboard_in_a_browser_then_export(store: LabelStore, live_server: str, chromium: Any,
                                                     tmp_path: Path) -> None:
    store.add_user("ann", PASSWORD)
    store.create_project("thumbs", "thumbs")
    store.add_items("thumbs", [NewItem("Name a prime.", ("7",)), NewItem("Name a prime.", (XSS[1] + XSS[0],))])
    context, page, problems = _page(chromium, live_server)
    _sign_in(page, "ann")
    page.goto("/p/thumbs/next")
    assert page.inner_text(".prompt .text") == "Name a prime."
    assert page.inner_text("#progress") == "item 1 of 2"
    page.keyboard.press("u")  # thumbs up...
    assert page.is_checked("input[name=thumb][value=up]")
    page.keyboard.press("Enter")  # ...submitted
    page.wait_for_selector("#progress:has-text('item 2 of 2')")
    assert page.inner_text(".response .text") == XSS[1] + XSS[0]  # shown as text, never run
    page.keyboard.press("u")
    page.keyboard.press("d")  # changed to thumbs down before submitting
    assert page.is_checked("input[name=thumb][value=down]") and not page.is_checked("input[name=thumb][value=up]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done")
    assert page.evaluate("window.__xss") is None and problems == []
    context.close()

    out = tmp_path / "feedback.jsonl"
    assert main(["label", "export", "--db", store.engine.url.database, "--out", str(out)]) == 0
    got = read_records(out, expect=Feedback)
    assert [(f.response, f.desirable, f.labeler) for f in got] == [("7", True, "ann"), (XSS[1] + XSS[0], False, "ann")]
    assert all(f.meta["seconds"] > 0 for f in got)
