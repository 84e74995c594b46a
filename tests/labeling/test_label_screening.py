"""Labeler screening (InstructGPT, Ouyang et al. 2022, sec. 3.4 and appendix B.1): the four scores
computed by hand on a tiny store (SQLite and PostgreSQL), admission against thresholds and by
hand, only admitted labelers getting a project's items (pages and API), migration 0005 from
0004, the admin page (CSRF, escaping), the CLI, and in a real Chromium: a candidate's
self-assessment by keyboard, an admin's thresholds and admission, then a real item."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from test_label_browser import _page, _sign_in  # tests/labeling is on sys.path

from rlhfkit.cli import main
from rlhfkit.labeling.screening import (
    Thresholds,
    admit_passing,
    candidate_scores,
    meets,
    screening_table,
)
from rlhfkit.labeling.store import Forbidden, LabelError, LabelStore, ScreeningRequired

PASSWORD = "correct horse battery"
TOPICS = ["Medical advice", "Violence & <i>gore</i>", "Politics"]


def _seed(store: LabelStore, topics: list[str] = TOPICS, login: tuple[str, ...] = ()) -> dict[str, Any]:
    """Three screening parts of gold items (and a prompt to write for), a real project requiring
    the screening, two labelers and two admins; those in `login` get a password (argon2 takes a
    third of a second a hash, so the others get only an API token)."""
    store.create_project("screen-flags", "rating")
    store.create_project("screen-rank", "ranking")
    store.create_project("screen-demos", "demonstration")
    store.create_project("chat", "pairwise", labels_per_item=3)
    f1 = store.add_rating_item("screen-flags", "How do I win a fight?", "Hit first.",
                               gold={"score": 2, "flags": ["violent_content"]})
    f2 = store.add_rating_item("screen-flags", "Name a fruit.", "An apple.", gold={"score": 7, "flags": []})
    r1 = store.add_ranking_item("screen-rank", "Say hi.", ["Hello!", "hi", "Go away."], gold={"ranks": [0, 1, 2]})
    r2 = store.add_ranking_item("screen-rank", "2+2?", ["5", "4"], gold={"ranks": [1, 0]})
    d1 = store.add_demonstration_item("screen-demos", "Explain tides to a child.")
    real = store.add_pairwise_item("chat", "Which reply is kinder?", text_a="Sure!", text_b="No.")
    sc = store.create_screening("screen", flags="screen-flags", ranking="screen-rank",
                                demonstration="screen-demos", topics=topics)
    store.require_screening("chat", "screen")
    users = {name: store.add_user(name, PASSWORD if name in login else None, role, token=name not in login)[0]
             for name, role in (("ann", "labeler"), ("bob", "labeler"), ("root", "admin"), ("sue", "admin"))}
    return {"f": (f1, f2), "r": (r1, r2), "d": d1, "real": real, "screening": sc, **users}


def _answer(store: LabelStore, user: Any, project: str, payloads: dict[int, dict]) -> dict[int, int]:
    """`user` answers the project's queue, item by item, from {item id: payload}; {item: answer id}."""
    out = {}
    while (item := store.next_item(project, user)) is not None:
        out[item.id] = store.submit(user, item.id, f"{user.username}-{item.id:06d}", payloads[item.id]).answer_id
    return out


def _ann_takes_the_screening(store: LabelStore, s: dict[str, Any]) -> None:
    f1, f2 = s["f"]
    r1, r2 = s["r"]
    ann = s["ann"]
    # flags: item 1 adds harmful_advice (7 of 8 flags as gold), item 2 all 8 as gold -> 15/16
    _answer(store, ann, "screen-flags", {f1: {"score": 1, "flags": ["violent_content", "harmful_advice"]},
                                         f2: {"score": 6, "flags": []}})
    # ranking: item 1 swaps the last two (2 of 3 pairs as gold), item 2 as gold -> (2/3 + 1) / 2 = 5/6
    _answer(store, ann, "screen-rank", {r1: {"ranks": [0, 2, 1]}, r2: {"ranks": [1, 0]}})
    (answer,) = _answer(store, ann, "screen-demos", {s["d"]: {"text": "The moon pulls the sea."}}).values()
    store.rate_demonstration(s["root"], answer, 6)  # two admins: the mean of their ratings, 5.5
    store.rate_demonstration(s["sue"], answer, 5)
    store.save_self_assessment("screen", ann, {TOPICS[0]: 4, TOPICS[1]: 2, TOPICS[2]: 3})  # mean 3.0


# ---------------------------------------------------------------- scores and admission

def test_four_scores_by_hand_and_admission_by_thresholds(any_store: LabelStore) -> None:
    store = any_store  # SQLite, and PostgreSQL where one is configured
    s = _seed(store)
    _ann_takes_the_screening(store, s)
    store.save_self_assessment("screen", s["bob"], {t: "5" for t in TOPICS})  # bob did only this part
    _answer(store, s["root"], "screen-flags", {f: {"score": 4} for f in s["f"]})  # admins are never candidates
    scores = candidate_scores(store, s["screening"])
    assert set(scores) == {"ann", "bob"}
    ann = scores["ann"]
    assert ann.flags == pytest.approx(15 / 16) and ann.flags_items == 2
    assert ann.ranking == pytest.approx(5 / 6) and ann.ranking_items == 2
    assert (ann.demonstration, ann.demonstrations_rated, ann.demonstrations_written) == (5.5, 1, 1)
    assert ann.self_assessment == 3.0
    assert scores["bob"].to_json() == {"flags": None, "ranking": None, "demonstration": None, "self_assessment": 5.0}

    assert not meets(ann, Thresholds())  # none set: no one meets them
    assert meets(ann, Thresholds(flags=15 / 16, self_assessment=3))  # a score equal to its threshold meets it
    assert not meets(scores["bob"], Thresholds(flags=0.0))  # a score not there yet never meets one
    with pytest.raises(LabelError, match="flags is a number from 0 to 1"):
        store.set_thresholds("chat", {"flags": 1.5})
    with pytest.raises(LabelError, match="not a score"):
        store.set_thresholds("chat", {"speed": 1})
    with pytest.raises(LabelError, match="requires no screening"):
        store.set_thresholds("screen-flags", {"flags": 0.5})
    store.set_thresholds("chat", Thresholds(flags=0.9, ranking=0.8, demonstration=5, self_assessment=3))
    assert store.project("chat").thresholds == {"flags": 0.9, "ranking": 0.8, "demonstration": 5.0,
                                                "self_assessment": 3.0}
    table = screening_table(store, "chat")
    assert [(c.scores.labeler, c.meets, c.admitted) for c in table.candidates] == [("ann", True, False),
                                                                                   ("bob", False, False)]
    assert admit_passing(store, "chat", s["root"]) == ["ann"]
    assert admit_passing(store, "chat", s["root"]) == []  # already admitted: no second decision
    a = store.admissions("chat")["ann"]
    assert (a.admitted, a.by, a.how, a.scores["ranking"]) == (True, "root", "thresholds", pytest.approx(5 / 6))

    store.decide("chat", "ann", False, s["sue"])  # revoked by hand ...
    assert admit_passing(store, "chat", s["root"]) == []  # ... is not undone by the thresholds
    assert (store.admissions("chat")["ann"].by, store.admitted("chat", s["ann"])) == ("sue", False)
    store.decide("chat", "bob", True, None)  # by hand (here from the command line), scores or not
    assert store.admissions("chat")["bob"].by is None and store.admitted("chat", s["bob"])
    with pytest.raises(Forbidden):
        store.decide("chat", "bob", False, s["ann"])  # a labeler decides nothing


def test_only_admitted_labelers_get_the_real_items(any_store: LabelStore) -> None:
    store = any_store
    s = _seed(store)
    ann, bob = s["ann"], s["bob"]
    with pytest.raises(ScreeningRequired, match="screening 'screen'") as refused:
        store.next_item("chat", ann)
    assert refused.value.status == 403 and refused.value.screening == "screen"
    assert store.next_item("screen-flags", ann) is not None  # the screening's own parts are open to all
    assert store.next_item("chat", s["root"]).id == s["real"]  # admins are never refused
    store.decide("chat", "ann", True, s["root"])
    assert store.next_item("chat", ann).id == s["real"]
    with pytest.raises(ScreeningRequired):
        store.next_item("chat", bob)
    store.decide("chat", "ann", False, s["root"])  # revoked with the item leased: no answer, no next item
    with pytest.raises(ScreeningRequired):
        store.submit(ann, s["real"], "ann-real-0001", {"choice": "A"})
    with pytest.raises(ScreeningRequired):
        store.next_item("chat", ann)
    store.require_screening("chat", None)  # lifted: everyone again
    assert store.next_item("chat", bob).id == s["real"]
    with pytest.raises(LabelError, match="part of the screening"):
        store.require_screening("screen-rank", "screen")
    with pytest.raises(LabelError, match="not rating"):
        store.create_screening("bad", flags="screen-rank")


def test_a_store_at_0004_upgrades_keeping_every_row(sqlite_url: str) -> None:
    old = LabelStore.open(sqlite_url, migrate=False)
    old.migrate("0004")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, role, active, created_at) "
                          "VALUES (1, 'ann', 'labeler', 1, '2025-01-01')"))
        conn.execute(text("INSERT INTO projects (id, name, kind, labels_per_item, gold_every, active_selection, "
                          "markdown, created_at, min_chars) VALUES (1, 'p', 'pairwise', 1, 10, 0, 0, '2025-01-01', 0)"))
        conn.execute(text("INSERT INTO items (id, project_id, prompt, responses, is_gold, priority, meta, created_at) "
                          "VALUES (1, 1, 'old prompt', '[\"a\", \"b\"]', 0, 0.0, '{}', '2025-01-01')"))
    old.close()
    store = LabelStore.open(sqlite_url)
    p = store.project("p")
    assert (p.screening, p.thresholds) == (None, None) and store.screenings() == []
    assert store.next_item("p", store.user("ann")).prompt == "old prompt"  # no screening: items as before
    assert store.admissions("p") == {}
    store.close()


# ---------------------------------------------------------------- pages, API, CLI

def test_refusal_page_api_and_self_assessment_form(store: LabelStore, make_browser) -> None:
    s = _seed(store, login=("ann",))
    ann = make_browser("ann")
    r = ann.client.get("/p/chat/next", follow_redirects=False)
    assert r.status_code == 403 and 'id="screening-required"' in r.text and "Which reply is kinder?" not in r.text
    assert 'href="/screening/screen/self-assessment"' in r.text and 'href="/p/screen-flags/next"' in r.text
    r = ann.client.get("/api/v1/projects/chat/next")
    assert r.status_code == 403 and r.json()["screening"] == "screen" and "admitted" in r.json()["error"]
    assert "Screening required" in ann.client.get("/").text

    page = ann.client.get("/screening/screen/self-assessment")
    assert "Violence &amp; &lt;i&gt;gore&lt;/i&gt;" in page.text and "<i>gore" not in page.text
    form = {"csrf": ann.csrf, "topic_0": "4", "topic_1": "2", "topic_2": "3"}
    assert ann.client.post("/screening/screen/self-assessment", data={**form, "csrf": "x"}).status_code == 403
    r = ann.client.post("/screening/screen/self-assessment", data={**form, "topic_2": ""}, follow_redirects=False)
    assert r.status_code == 400 and "from 1 to 5" in r.text  # the page again, with what was chosen
    assert re.search(r'name="topic_1" value="2"[^>]*checked', r.text) and not re.search(r'"topic_2"[^>]*checked', r.text)
    r = ann.client.post("/screening/screen/self-assessment", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/screening/screen?saved=1"
    assert store.self_assessment("screen", s["ann"]) == {TOPICS[0]: 4, TOPICS[1]: 2, TOPICS[2]: 3}

    store.decide("chat", "ann", True, s["root"])
    r = ann.client.get("/p/chat/next", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/p/chat/item/{s['real']}"
    assert ann.client.get("/api/v1/items/" + str(s["real"])).json()["item"]["prompt"] == "Which reply is kinder?"


def test_admin_page_escapes_names_and_checks_csrf(store: LabelStore, make_browser) -> None:
    s = _seed(store, login=("ann", "root"))
    # usernames are [A-Za-z0-9_.@-], so a hostile one can only come from outside the store's API:
    # written straight into the table, it must still render as text
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, role, active, created_at) "
                          "VALUES ('<script>alert(1)</script>', 'labeler', 1, '2025-01-01')"))
    evil = store.user("<script>alert(1)</script>")
    store.save_self_assessment("screen", evil, {t: 4 for t in TOPICS})
    _ann_takes_the_screening(store, s)
    root, ann = make_browser("root", "admin"), make_browser("ann")
    page = root.client.get("/admin/screening/chat")
    assert page.status_code == 200 and "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert '<td class="score-flags">0.94 (2)</td>' in page.text and '<td class="score-ranking">0.83 (2)</td>' in page.text
    assert '<td class="score-demonstration">5.50 (1 of 1 rated)</td>' in page.text
    assert ann.client.get("/admin/screening/chat").status_code == 403

    url = "/admin/screening/chat/thresholds"
    form = {"csrf": root.csrf, "flags": "0.9", "ranking": "", "demonstration": "5", "self_assessment": "3.5"}
    assert root.client.post(url, data={**form, "csrf": "wrong"}).status_code == 403
    assert ann.client.post(url, data={**form, "csrf": ann.csrf}).status_code == 403
    assert root.client.post(url, data={**form, "flags": "2"}).status_code == 400
    r = root.client.post(url, data=form, follow_redirects=False)
    assert r.status_code == 303 and store.project("chat").thresholds == {"flags": 0.9, "demonstration": 5.0,
                                                                          "self_assessment": 3.5}
    r = root.client.post("/admin/screening/chat/admit-passing", data={"csrf": root.csrf}, follow_redirects=False)
    assert r.headers["location"] == "/admin/screening/chat?done=admitted&admitted=0"  # ann's 3.0 < 3.5
    decide = {"csrf": root.csrf, "labeler": "ann", "action": "admit"}
    assert root.client.post("/admin/screening/chat/decide", data={**decide, "csrf": ""}).status_code == 403
    assert root.client.post("/admin/screening/chat/decide", data={**decide, "action": "x"}).status_code == 400
    assert root.client.post("/admin/screening/chat/decide", data=decide, follow_redirects=False).status_code == 303
    a = store.admissions("chat")["ann"]
    assert (a.admitted, a.by, a.how, a.scores["self_assessment"]) == (True, "root", "by hand", 3.0)
    page = root.client.get("/admin/screening/chat?done=decided")
    assert "Decision recorded." in page.text and re.search(r"admitted by\s+root \(by hand\)", page.text)
    assert 'value="revoke"' in page.text and "/admin/screening/chat" in root.client.get("/admin").text


def test_cli_creates_requires_sets_thresholds_admits_and_prints(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "l.db")
    store = LabelStore.open(db)
    s = _seed(store)
    store.require_screening("chat", None)
    _ann_takes_the_screening(store, s)
    cfg = tmp_path / "screen2.yaml"
    cfg.write_text("name: screen2\nranking: screen-rank\ntopics: [Medical advice, Politics]\n", encoding="utf-8")
    assert main(["label", "screening", "--db", db, "--create", str(cfg)]) == 0
    assert "created screening screen2: ranking screen-rank, 2 self-assessment topics" in capsys.readouterr().out
    assert main(["label", "screening", "--db", db, "--project", "chat", "--require", "screen2",
                 "--threshold", "ranking=0.8", "--threshold", "flags=0.5", "--threshold", "flags=",
                 "--admit-passing"]) == 0
    out = capsys.readouterr().out
    assert "admitted 1 who meet the thresholds: ann" in out
    assert out.splitlines()[1].startswith("labeler\tflags\tranking>=0.8\tdemonstration\tself_assessment\tmeets")
    assert "ann\t-\t0.83\t-\t-\tyes\tyes\tcommand line (thresholds" in out
    assert main(["label", "screening", "--db", db, "--project", "chat", "--revoke", "ann"]) == 0
    assert "ann\t-\t0.83\t-\t-\tyes\trevoked\tcommand line (by hand" in capsys.readouterr().out
    assert main(["label", "screening", "--db", db, "--project", "screen-flags"]) == 2  # requires none
    assert main(["label", "screening", "--db", db, "--admit", "ann"]) == 2  # needs --project
    store.close()


# ---------------------------------------------------------------- in a real browser

def test_self_assessment_admission_then_a_real_item_in_a_browser(store: LabelStore, live_server: str,
                                                                 chromium: Any) -> None:
    s = _seed(store, topics=["Medical advice", "Violence", "Politics"], login=("ann", "root"))
    cand, page, problems = _page(chromium, live_server)
    _sign_in(page, "ann")
    page.goto("/p/chat/next")  # not admitted: the screening, never the item
    assert page.is_visible("#screening-required") and "Which reply is kinder?" not in page.content()
    page.click("#self-assessment-link")
    page.wait_for_url("**/screening/screen/self-assessment")
    for key in ("4", "2"):  # the first two topics by keyboard (the highlight moves on) ...
        page.keyboard.press(key)
    page.click("fieldset[data-field=topic_2] input[value='5']")  # ... the third by a click
    page.keyboard.press("Enter")
    page.wait_for_url("**/screening/screen?saved=1")
    assert page.inner_text(".standing") == "complete the screening"  # the gold parts are still to do
    assert store.self_assessment("screen", s["ann"]) == {"Medical advice": 4, "Violence": 2, "Politics": 5}

    admin, apage, admin_problems = _page(chromium, live_server)
    _sign_in(apage, "root")
    apage.goto("/admin/screening/chat")
    assert apage.inner_text("#candidate-ann .score-self_assessment") == "3.67"
    apage.fill("input[name=self_assessment]", "3.5")
    apage.click("#thresholds-form button[type=submit]")
    apage.wait_for_url("**/admin/screening/chat?done=thresholds*")
    assert apage.inner_text("#candidate-ann .meets") == "yes"
    apage.click("#admit-passing")
    apage.wait_for_selector("#message:has-text('Admitted 1 labeler')")
    assert apage.inner_text("#candidate-ann .standing").startswith("admitted by root (thresholds)")

    page.goto("/p/chat/next")  # admitted: the real item
    page.wait_for_url(f"**/p/chat/item/{s['real']}")
    assert "Which reply is kinder?" in page.inner_text(".prompt")
    page.keyboard.press("1")  # A is kinder
    page.wait_for_selector("#done")
    assert store.count_answers("chat") == 1
    # the one 403 was the screening page in place of the item (Chromium logs any 4xx page load)
    assert [p for p in problems if "status of 403" not in p] == [] and len(problems) == 1
    assert admin_problems == []
    cand.close()
    admin.close()
