"""Demonstration tasks (InstructGPT step 1): import prompts (with optional context), a labeler
writes the response (minimum length, draft autosaved), export gives `demonstration` records
that `rlhfkit sft` trains on, and admins rate demonstrations 1-7 (the demonstration score).
The last test does it all in a real headless Chromium and fine-tunes a tiny model on the export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from test_label_browser import _page  # tests/labeling is on sys.path

from rlhfkit.cli import main
from rlhfkit.feedback.formats import read_records
from rlhfkit.feedback.records import Demonstration
from rlhfkit.labeling.export import collect_records
from rlhfkit.labeling.importing import ImportFailed, read_items
from rlhfkit.labeling.kinds import AnswerError, validate_answer
from rlhfkit.labeling.quality import demonstration_scores, project_quality
from rlhfkit.labeling.store import Conflict, Forbidden, LabelError, LabelStore, NotFound

PASSWORD = "correct horse battery"
CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime."}]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _demo_project(store: LabelStore, min_chars: int = 0) -> None:
    store.create_project("demos", "demonstration", min_chars=min_chars, instructions="Write **helpful** answers.")


# ---------------------------------------------------------------- import and answers

def test_import_rows_prompt_context_and_conversation(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "Explain tides."},
                                      {"prompt": CONVO, "context": "The user is a child.", "meta": {"src": "x"}}])
    a, b = read_items(f, "demonstration")
    assert (a.prompt, a.responses, a.context) == ("Explain tides.", (), None)
    assert b.prompt[1].content == "Name a prime." and b.context == "The user is a child." and b.meta == {"src": "x"}


@pytest.mark.parametrize("row, message", [
    ({"context": "c"}, "field 'prompt': missing"),
    ({"prompt": "p", "response": "r"}, "field 'response': not a field of a demonstration row"),
    ({"prompt": "p", "responses": ["r"]}, "the labeler writes the response"),
    ({"prompt": "p", "gold": {"text": "x"}}, "admins rate demonstrations instead"),
    ({"prompt": "p", "context": 3}, "field 'context': expected a string"),
    ({"prompt": "p", "context": "x" * 20_001}, "field 'context': too long"),
    ({"prompt": "p", "meta": []}, "field 'meta'"),
    ({"prompt": CONVO + [{"role": "assistant", "content": "2"}]}, "must not end with an assistant turn"),
])
def test_bad_demonstration_rows_fail_naming_the_field(tmp_path: Path, row: dict, message: str) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(ImportFailed) as err:
        read_items(f, "demonstration")
    assert f"{f}:2:" in str(err.value) and message in str(err.value)


def test_answers_are_normalized_and_checked_against_min_chars() -> None:
    got = validate_answer("demonstration", 0, {"text": "\r\n  \r\n    indented first line\r\nsecond  \r\n"}, 10)
    assert got == {"text": "    indented first line\nsecond"}  # CRLF -> LF, blank lines and trailing space cut
    with pytest.raises(AnswerError, match="at least 40 characters"):
        validate_answer("demonstration", 0, {"text": "too short"}, 40)
    for bad in ({"text": "   \n "}, {"text": 5}, {}, {"text": "x" * 20_001}):
        with pytest.raises(AnswerError):
            validate_answer("demonstration", 0, bad)


def test_min_chars_and_instructions_are_checked(store: LabelStore) -> None:
    with pytest.raises(LabelError, match="demonstration projects"):
        store.create_project("r", "rating", min_chars=5)
    with pytest.raises(LabelError, match="min_chars"):
        store.create_project("d", "demonstration", min_chars=-1)
    with pytest.raises(LabelError, match="instructions"):
        store.create_project("d", "demonstration", instructions="x" * 100_001)
    _demo_project(store, 5)
    p = store.set_project_options("demos", min_chars=12)
    assert (p.min_chars, p.instructions) == (12, "Write **helpful** answers.")
    assert store.set_project_options("demos", instructions="").instructions is None


# ---------------------------------------------------------------- drafts, submit, export, ratings

def test_draft_submit_export_and_admin_rating(any_store: LabelStore) -> None:
    store = any_store  # SQLite, and PostgreSQL where one is configured
    _demo_project(store, min_chars=10)
    item = store.add_demonstration_item("demos", "Explain tides.", context="For a sailor.", meta={"src": "t"})
    ann = store.add_user("ann", PASSWORD)[0]
    bob = store.add_user("bob", PASSWORD)[0]
    root = store.add_user("root", PASSWORD, role="admin")[0]
    assert store.next_item("demos", ann).context == "For a sailor."
    with pytest.raises(NotFound):
        store.save_draft(bob, item, "not mine")  # not in bob's queue
    store.save_draft(ann, item, "The moon pulls")
    store.save_draft(ann, item, "The moon pulls the sea")
    assert store.draft(ann, item) == "The moon pulls the sea"
    with pytest.raises(LabelError, match="at least 10"):
        store.submit(ann, item, "demo-key-0001", {"text": "The moon"})
    res = store.submit(ann, item, "demo-key-0002", {"text": "The moon pulls the sea.\r\n"})
    assert store.draft(ann, item) is None  # cleared with the answer
    with pytest.raises(Conflict):
        store.save_draft(ann, item, "too late")

    (record,) = collect_records(store, "demos")
    assert isinstance(record, Demonstration) and record.response == "The moon pulls the sea."
    assert record.labeler == "ann" and record.prompt == "Explain tides."
    assert record.meta["context"] == "For a sailor." and record.meta["src"] == "t" and record.meta["item"] == item

    with pytest.raises(Forbidden):
        store.rate_demonstration(ann, res.answer_id, 7)
    with pytest.raises(LabelError, match="1-7"):
        store.rate_demonstration(root, res.answer_id, 8)
    store.rate_demonstration(root, res.answer_id, 4)
    store.rate_demonstration(root, res.answer_id, 6)  # a second rating replaces the admin's first
    assert store.demonstration_ratings("demos") == {res.answer_id: [("root", 6)]}
    rows = store.items_with_answers("demos")
    score = demonstration_scores(rows, store.demonstration_ratings("demos"))["ann"]
    assert (score.score, score.rated) == (6.0, 1)
    q = project_quality("demonstration", rows)  # free text: no agreement units, no gold
    assert q.answers == 1 and q.krippendorff_alpha is None and q.labelers[0].gold_agreement is None

    store.create_project("rate", "rating")
    other = store.add_rating_item("rate", "p", "r")
    store.next_item("rate", ann)
    rating = store.submit(ann, other, "rate-key-0001", {"score": 3})
    with pytest.raises(LabelError, match="not a demonstration"):
        store.rate_demonstration(root, rating.answer_id, 5)


def test_forms_api_and_admin_page(store: LabelStore, make_browser) -> None:
    _demo_project(store, min_chars=10)
    item = store.add_demonstration_item("demos", "Say <b>hi</b>", context="<img src=x onerror=alert(1)>")
    ann = make_browser("ann")
    assert ann.client.get("/p/demos/next", follow_redirects=False).headers["location"] == "/p/demos/instructions"
    r = ann.client.get("/p/demos/next?start=1", follow_redirects=False)
    page = ann.client.get(r.headers["location"])
    assert 'data-kind="demonstration"' in page.text and "item 1 of 1" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "Say &lt;b&gt;hi&lt;/b&gt;" in page.text
    url = f"/api/v1/items/{item}/draft"
    assert ann.client.post(url, json={"text": "draft <script>"}).status_code == 403  # no CSRF token
    r = ann.client.post(url, json={"text": "draft <script>"}, headers={"x-csrf-token": ann.csrf})
    assert r.status_code == 200 and r.json() == {"saved": True, "chars": 14}
    assert ann.client.post(url, json={"text": "x" * 20_001}, headers={"x-csrf-token": ann.csrf}).status_code == 400
    page = ann.client.get(page.url.path)  # a reload: the draft is back, escaped
    assert "\ndraft &lt;script&gt;</textarea>" in page.text and "Draft restored." in page.text
    r = ann.submit(page, {"text": "short"})
    assert r.status_code == 400 and "at least 10 characters" in r.text and "short</textarea>" in r.text
    assert ann.submit(page, {"text": "Hello, how are you?"}).status_code == 303

    root = make_browser("root", "admin")
    admin_page = root.client.get("/admin/p/demos")
    assert "Hello, how are you?" in admin_page.text and "Demonstration score" in admin_page.text
    answer_id = int(re.search(r'id="answer-(\d+)"', admin_page.text).group(1))
    form = {"csrf": root.csrf, "score": "5", "project": "demos", "page": "1"}
    r = root.client.post(f"/admin/answers/{answer_id}/rating", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/admin/p/demos?page=1#answer-{answer_id}"
    assert '<td class="demo-score">5.00 (1)</td>' in root.client.get("/admin/p/demos").text
    assert ann.client.post(f"/admin/answers/{answer_id}/rating", data={**form, "csrf": ann.csrf}).status_code == 403
    assert root.client.post(f"/admin/answers/{answer_id}/rating", data={**form, "score": "9"}).status_code == 400


def test_cli_import_with_instructions_then_export_reads_as_sft_data(tmp_path: Path) -> None:
    db, out = str(tmp_path / "l.db"), tmp_path / "demos.jsonl"
    rows = _jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Explain tides."}, {"prompt": CONVO}])
    howto = tmp_path / "howto.md"
    howto.write_text("# How to write\nBe **kind**.\n", encoding="utf-8")
    assert main(["label", "import", str(rows), "--db", db, "--project", "demos", "--kind", "demonstration",
                 "--min-chars", "5", "--instructions", str(howto)]) == 0
    assert main(["label", "import", str(rows), "--db", db, "--project", "demos", "--min-chars", "500"]) == 0
    assert main(["label", "import", str(rows), "--db", db, "--project", "p2", "--kind", "rating",
                 "--min-chars", "5"]) == 2  # only demonstration projects have a minimum length
    assert main(["label", "import", str(rows), "--db", db, "--project", "demos",
                 "--instructions", str(tmp_path / "missing.md")]) == 2
    store = LabelStore.open(db)
    p = store.project("demos")
    assert (p.kind, p.min_chars, p.instructions) == ("demonstration", 500, "# How to write\nBe **kind**.\n")
    assert len(store.item_ids("demos")) == 4
    store.set_project_options("demos", min_chars=5)
    ann = store.add_user("ann", PASSWORD)[0]
    for n in range(2):
        item = store.next_item("demos", ann)
        store.submit(ann, item.id, f"cli-demo-{n:04d}", {"text": f"Answer number {n}."})
    assert main(["label", "export", "--db", db, "--out", str(out), "--project", "demos"]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["type"] == "demonstration" and first["labeler"] == "ann" and first["meta"]["project"] == "demos"
    demos = read_records(out, expect=Demonstration)  # what `rlhfkit sft --data` reads
    assert [d.response for d in demos] == ["Answer number 0.", "Answer number 1."]
    assert demos[1].prompt[0].role == "system"  # a conversation stays messages


def test_a_store_at_0002_upgrades_keeping_every_row(sqlite_url: str) -> None:
    old = LabelStore.open(sqlite_url, migrate=False)
    old.migrate("0002")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, role, active, created_at) "
                          "VALUES (1, 'ann', 'labeler', 1, '2025-01-01')"))
        conn.execute(text("INSERT INTO projects (id, name, kind, labels_per_item, gold_every, active_selection, "
                          "markdown, created_at) VALUES (1, 'p', 'rating', 1, 10, 0, 0, '2025-01-01')"))
        conn.execute(text("INSERT INTO items (id, project_id, prompt, responses, is_gold, priority, meta, created_at) "
                          "VALUES (1, 1, 'old prompt', '[\"r\"]', 0, 0.0, '{}', '2025-01-01')"))
        conn.execute(text("INSERT INTO assignments (id, item_id, user_id, served_at, answered) "
                          "VALUES (1, 1, 1, '2025-01-01', 1)"))
        conn.execute(text("INSERT INTO answers (id, item_id, user_id, client_key, payload, seconds_wall, created_at) "
                          "VALUES (1, 1, 1, 'old-key-0001', '{\"score\": 5, \"flags\": [], \"notes\": \"\"}', 2.0, "
                          "'2025-01-01')"))
    old.close()
    store = LabelStore.open(sqlite_url)
    p = store.project("p")
    assert (p.min_chars, p.instructions) == (0, None)
    assert store.item(1).prompt == "old prompt" and store.item(1).context is None
    assert store.answers_for([1])[1][0].payload["score"] == 5 and store.count_answers() == 1
    assert store.demonstration_ratings("p") == {}
    store.close()


# ---------------------------------------------------------------- in a real browser, then SFT

def test_write_reload_submit_export_and_sft_in_a_browser(store: LabelStore, live_server: str, chromium: Any,
                                                         tiny_lm: Path, tmp_path: Path) -> None:
    store.add_user("ann", PASSWORD)
    store.create_project("demos", "demonstration", min_chars=20)
    first = store.add_demonstration_item("demos", "Write a review of the film.", context="The film is a comedy.")
    second = store.add_demonstration_item("demos", "Write a short review of the book.")
    context, page, problems = _page(chromium, live_server)
    page.goto("/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")

    page.goto("/p/demos/next")  # no instructions: straight to the task
    assert page.inner_text(".context .text") == "The film is a comedy."
    assert page.inner_text("#progress") == "item 1 of 2"
    page.keyboard.press("w")  # into the text box
    page.keyboard.type("A warm and funny film.")
    assert page.inner_text("#char-count") == "22 characters"
    page.keyboard.press("Enter")
    page.keyboard.type("The cast is great")
    from playwright.sync_api import expect

    expect(page.locator("#draft-status")).to_have_text("Draft saved.")  # autosaved as it was typed
    assert page.url.endswith(f"/p/demos/item/{first}")
    page.reload()
    assert page.input_value("textarea[name=text]") == "A warm and funny film.\nThe cast is great"  # autosaved
    assert page.inner_text("#char-count") == "40 characters"
    assert page.is_visible(".timer")  # the time on this page, counting
    page.click("textarea[name=text]")
    page.keyboard.press("Control+End")
    page.keyboard.type(".")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/p/demos/item/{second}")
    assert page.inner_text("#progress") == "item 2 of 2"

    page.keyboard.press("Enter")
    page.keyboard.type("Too short.")
    page.keyboard.press("Control+Enter")  # the browser refuses (minlength); so would the server
    page.wait_for_timeout(200)
    assert store.count_answers("demos") == 1
    page.keyboard.type(" A gripping story, told well.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#done")
    assert problems == []
    context.close()

    out = tmp_path / "demos.jsonl"
    assert main(["label", "export", "--db", store.engine.url.database, "--out", str(out)]) == 0
    demos = read_records(out, expect=Demonstration)
    assert [d.response for d in demos] == ["A warm and funny film.\nThe cast is great.",
                                           "Too short. A gripping story, told well."]
    assert all(d.labeler == "ann" and d.meta["seconds"] > 0 for d in demos)

    run = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_lm), "--data", str(out), "--out", str(run), "--set", "heldout_frac=0",
                 "--set", "optim.max_steps=2", "--set", "optim.batch_size=2", "--set", "optim.checkpoint_every=0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["demonstrations"] == 2 and summary["steps"] == 2
    assert (run / "final" / "model.safetensors").exists()
