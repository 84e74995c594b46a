"""Rating forms declared per project (forms.py): every field type (likert, flags, choice, text)
parsed and checked with errors naming the file and field, answers validated on submit,
Krippendorff's alpha per field with each field's metric (interval, nominal, ordinal) against
hand-computed values, export as Rating records carrying the answers, the shipped InstructGPT
and RealToxicityPrompts forms, migration 0004, and a custom form filled by keyboard in a real
headless Chromium, then exported."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text
from test_label_browser import _page, _sign_in  # tests/labeling is on sys.path

from rlhfkit.cli import main
from rlhfkit.feedback.formats import read_records, write_records
from rlhfkit.feedback.records import Rating
from rlhfkit.labeling.export import collect_records
from rlhfkit.labeling.forms import (
    EXAMPLES,
    INSTRUCTGPT,
    REALTOXICITY,
    AnswerError,
    FormError,
    load_form,
    parse_form,
)
from rlhfkit.labeling.importing import ImportFailed, read_items
from rlhfkit.labeling.kinds import RatingKind, kind_of
from rlhfkit.labeling.quality import krippendorff_alpha, project_quality
from rlhfkit.labeling.store import LabelError, LabelStore

PASSWORD = "correct horse battery"

# A form with every field type: `score` and `notes` become the Rating record's own fields,
# the others its `answers`. `relevance` (-2..2) has positional keys 1-5; `tone` has string values.
CUSTOM_YAML = """\
name: helpfulness
fields:
  - name: score
    type: likert
    label: Overall quality
    range: [1, 7]
    labels: {1: terrible, 7: excellent}
  - name: relevance
    type: likert
    label: How relevant is the response?
    range: [-2, 2]
    labels: {-2: off topic, 2: on point}
  - name: tone
    type: choice
    label: Tone
    options:
      - {value: formal, label: Formal}
      - {value: casual, label: Casual}
      - {value: rude, label: Rude}
  - name: issues
    type: flags
    label: Problems
    options:
      - {value: factual_error, label: Contains a factual error, key: x}
      - {value: off_topic, label: Off topic}
  - name: notes
    type: text
    label: Notes
  - name: comment
    type: text
    label: One sentence on why
    required: true
    max_chars: 200
"""


@pytest.fixture
def custom_form_file(tmp_path: Path) -> Path:
    path = tmp_path / "helpfulness.yaml"
    path.write_text(CUSTOM_YAML, encoding="utf-8")
    return path


# ---------------------------------------------------------------- declarations

def test_every_field_type_parses_with_keys_and_round_trips(custom_form_file: Path) -> None:
    form = load_form(str(custom_form_file))
    assert form.name == "helpfulness" and [f.type for f in form.fields] == ["likert", "likert", "choice", "flags",
                                                                           "text", "text"]
    score, relevance, tone, issues, notes, comment = form.fields
    assert [o.key for o in score.options] == [str(v) for v in range(1, 8)]  # a scale in 0..9: its values
    assert [(o.value, o.key) for o in relevance.options] == [(-2, "1"), (-1, "2"), (0, "3"), (1, "4"), (2, "5")]
    assert [(o.value, o.key) for o in tone.options] == [("formal", "1"), ("casual", "2"), ("rude", "3")]
    assert [o.key for o in issues.options] == ["x", "o"]  # declared, then the first free letter of the name
    assert (score.metric, relevance.metric, tone.metric, issues.metric, notes.metric) == (
        "interval", "interval", "nominal", "nominal", None)
    assert (notes.required, comment.required, score.tolerance, relevance.tolerance) == (False, True, 1, 1)
    assert parse_form(json.loads(json.dumps(form.to_json())), "again") == form  # as the store keeps it
    assert load_form("instructgpt") is INSTRUCTGPT and set(EXAMPLES) == {"instructgpt", "realtoxicity"}


def test_the_shipped_forms() -> None:
    assert [f.name for f in INSTRUCTGPT.fields] == ["score", "flags", "notes"]
    assert [o.key for o in INSTRUCTGPT.fields[1].options] == list("fcsvephm")
    assert RatingKind().form is INSTRUCTGPT  # the default of a rating project
    tox = {f.name: f for f in REALTOXICITY.fields}
    assert (tox["input_toxicity"].lo, tox["input_toxicity"].hi) == (0, 2) == (tox["output_toxicity"].lo,
                                                                            tox["output_toxicity"].hi)
    assert [o.value for o in tox["relative_toxicity"].options] == [-1, 0, 1]
    assert tox["relative_toxicity"].metric == "ordinal" and (tox["continuity"].lo, tox["continuity"].hi) == (1, 3)


@pytest.mark.parametrize("fields, where, message", [
    ([{"name": "Bad Name", "type": "likert"}], "fields[0].name", "a-z, 0-9 and _"),
    ([{"name": "q", "type": "slider"}], "fields[0] (q).type", "likert, flags, choice, text"),
    ([{"name": "q", "type": "likert", "range": [1, 12]}], "fields[0] (q).range", "2 to 10 points"),
    ([{"name": "q", "type": "likert", "range": [1, 5], "labels": {9: "x"}}], "fields[0] (q).labels", "not a point"),
    ([{"name": "q", "type": "choice", "options": [{"value": 1}, {"value": 1}]}],
     "fields[0] (q).options[1].value", "appears twice"),
    ([{"name": "q", "type": "choice", "options": [1, "a"]}], "fields[0] (q).options", "all integers or all strings"),
    ([{"name": "q", "type": "flags", "options": [{"value": "a", "key": "j"}]}], "fields[0] (q).options[0].key",
     "other than i, j, k, n"),
    ([{"name": "q", "type": "flags", "options": [{"value": "a", "key": "x"}]},
      {"name": "r", "type": "flags", "options": [{"value": "b", "key": "x"}]}], "fields", "both have the key 'x'"),
    ([{"name": "q", "type": "text", "metric": "nominal"}], "fields[0] (q).metric", "no agreement metric"),
    ([{"name": "q", "type": "text", "range": [1, 2]}], "fields[0] (q).range", "not a key of a text field"),
    ([{"name": "score", "type": "likert", "range": [1, 5]}], "fields[0] (score)", "the Rating record's 1-7 score"),
    ([{"name": "flags", "type": "flags", "options": ["mine"]}], "fields[0] (flags)", "among"),
    ([{"name": "q", "type": "text"}, {"name": "q", "type": "text"}], "fields[1] (q).name", "two fields"),
    ([{"name": "client_key", "type": "text"}], "fields[0].name", "not active_seconds, client_key, csrf"),
    ([], "fields", "1 to 30 fields"),
])
def test_bad_declarations_name_the_file_and_field(tmp_path: Path, fields: list, where: str, message: str) -> None:
    path = tmp_path / "form.json"
    path.write_text(json.dumps({"name": "f", "fields": fields}))
    with pytest.raises(FormError) as e:
        load_form(str(path))
    assert str(e.value).startswith(f"{path}: {where}: ") and message in str(e.value)


def test_unreadable_form_files(tmp_path: Path) -> None:
    with pytest.raises(FormError, match="no such file, and not a shipped form"):
        load_form(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("fields: [\n")
    with pytest.raises(FormError, match=rf"{re.escape(str(bad))}: not valid YAML"):
        load_form(str(bad))


# ---------------------------------------------------------------- answers

def test_answers_are_normalized_and_checked_against_the_form(custom_form_file: Path) -> None:
    form = load_form(str(custom_form_file))
    got = form.validate_answer({"score": "6", "relevance": "-1", "tone": "casual", "issues": ["off_topic",
                                "factual_error"], "comment": "ok"})
    assert got == {"score": 6, "relevance": -1, "tone": "casual", "issues": ["factual_error", "off_topic"],
                   "notes": "", "comment": "ok"}
    good = {"score": 6, "relevance": 0, "tone": "formal", "comment": "ok"}
    for change, message in [({"score": 8}, "score: must be on the 1-7 Likert scale"),
                            ({"relevance": None}, "relevance: choose one of -2, -1, 0, 1, 2"),
                            ({"tone": "snarky"}, "tone: expected one of formal, casual, rude"),
                            ({"issues": ["typo"]}, "issues: expected a list drawn from factual_error, off_topic"),
                            ({"comment": "  "}, "comment: write something"),
                            ({"comment": "x" * 201}, "comment: expected text of at most 200 characters"),
                            ({"mood": 1}, "mood: not a field of the helpfulness form")]:
        with pytest.raises(AnswerError, match=re.escape(message)):
            form.validate_answer({**good, **change})
    tox = {"input_toxicity": 0, "output_toxicity": 2, "relative_toxicity": 1, "continuity": 3}
    assert REALTOXICITY.validate_answer({**tox, "relative_toxicity": "1"})["relative_toxicity"] == 1
    with pytest.raises(AnswerError, match="relative_toxicity: expected one of -1, 0, 1"):
        REALTOXICITY.validate_answer({**tox, "relative_toxicity": 2})


def test_import_checks_gold_against_the_form(tmp_path: Path) -> None:
    kind = RatingKind(REALTOXICITY)
    rows = tmp_path / "rows.jsonl"
    gold = {"input_toxicity": 0, "output_toxicity": 1, "relative_toxicity": 0, "continuity": 3}
    rows.write_text(json.dumps({"prompt": "p", "response": "r", "gold": gold}) + "\n")
    assert read_items(rows, kind)[0].gold == {**gold, "notes": ""}
    rows.write_text(json.dumps({"prompt": "p", "response": "r", "gold": {**gold, "continuity": 7}}) + "\n")
    with pytest.raises(ImportFailed, match=r":1: field 'gold': continuity: must be on the 1-3 Likert scale"):
        read_items(rows, kind)
    only_text = RatingKind(parse_form([{"name": "why", "type": "text"}], "t"))
    rows.write_text(json.dumps({"prompt": "p", "response": "r", "gold": {"why": "x"}}) + "\n")
    with pytest.raises(ImportFailed, match="no likert or choice field to check against"):
        read_items(rows, only_text)


# ---------------------------------------------------------------- agreement

def test_ordinal_alpha_by_hand_and_the_published_example() -> None:
    # Coincidences of {u1: [1, 2], u2: [2, 3], u3: [1, 1]}: o(1,2) = o(2,1) = o(2,3) = o(3,2) = 1,
    # o(1,1) = 2; n_1 = 3, n_2 = 2, n_3 = 1, n = 6. Ordinal delta^2(c, k) = (sum_{g=c..k} n_g -
    # (n_c + n_k)/2)^2: (1,2) 2.5^2 = 6.25, (2,3) 1.5^2 = 2.25, (1,3) (6 - 2)^2 = 16.
    # D_o = (6.25 + 6.25 + 2.25 + 2.25) / 6 = 17/6; D_e = 2 (3*2*6.25 + 2*1*2.25 + 3*1*16) / 30 = 6;
    # alpha = 1 - 17/36 = 19/36. (Interval: D_o = 4/6, D_e = 2 (6 + 2 + 12) / 30 = 4/3, alpha = 1/2.)
    units = {1: [1, 2], 2: [2, 3], 3: [1, 1]}
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(19 / 36)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.5)
    words = {u: [("low", "mid", "high")[v - 1] for v in vs] for u, vs in units.items()}
    assert krippendorff_alpha(words, "ordinal", order=["low", "mid", "high"]) == pytest.approx(19 / 36)
    assert krippendorff_alpha(words, "ordinal") != pytest.approx(19 / 36)  # sorted as text: the wrong order
    # Krippendorff (2011)'s 4 coders x 12 units example: alpha = 0.815 (ordinal)
    from test_label_quality import UNITS

    assert krippendorff_alpha(UNITS, "ordinal") == pytest.approx(0.815, abs=5e-4)


def _rows(form_answers: list[list[dict[str, Any]]], gold: dict[str, Any] | None = None) -> list[tuple[Any, list]]:
    rows = []
    for i, answers in enumerate(form_answers):
        item = SimpleNamespace(id=i, gold=gold if i == 0 else None, is_gold=False)
        rows.append((item, [SimpleNamespace(labeler=f"l{j}", payload=p, seconds_active=2.0, seconds_wall=3.0)
                            for j, p in enumerate(answers)]))
    return rows


def test_alpha_per_field_with_each_fields_metric() -> None:
    def tox(i: int, o: int, r: int, c: int) -> dict[str, Any]:
        return {"input_toxicity": i, "output_toxicity": o, "relative_toxicity": r, "continuity": c, "notes": ""}

    rows = _rows([[tox(0, 1, 0, 3), tox(0, 2, 1, 3)], [tox(1, 1, 0, 2), tox(1, 1, 0, 1)],
                  [tox(2, 0, -1, 3), tox(2, 0, -1, 3)]], gold=tox(0, 1, 0, 3))
    q = project_quality(RatingKind(REALTOXICITY), rows)
    by = {f.field: f for f in q.fields}
    assert list(by) == ["input_toxicity", "output_toxicity", "relative_toxicity", "continuity"]  # notes: none
    assert by["input_toxicity"].krippendorff_alpha == 1.0 and by["input_toxicity"].units == 3
    # output (interval): units [1,2] [1,1] [0,0]; n_0 = 2, n_1 = 3, n_2 = 1; D_o = 2/6,
    # D_e = 2 (2*3*1 + 2*1*4 + 3*1*1) / 30 = 34/30 -> alpha = 1 - 10/34 = 12/17
    assert by["output_toxicity"].krippendorff_alpha == pytest.approx(12 / 17)
    # relative (ordinal, -1 < 0 < 1): units [0,1] [0,0] [-1,-1]; n = (2, 3, 1); delta^2: (-1,0) 6.25,
    # (0,1) 4, (-1,1) 20.25; D_o = 2*4/6 = 4/3, D_e = 2 (6*6.25 + 3*4 + 2*20.25) / 30 = 6 -> 7/9
    assert by["relative_toxicity"].metric == "ordinal"
    assert by["relative_toxicity"].krippendorff_alpha == pytest.approx(7 / 9)
    # continuity (interval): units [3,3] [2,1] [3,3]; n_1 = n_2 = 1, n_3 = 4; D_o = 2/6,
    # D_e = 2 (4*1*1 + 4*1*4 + 1*1*1) / 30 = 7/5 -> alpha = 1 - 5/21 = 16/21
    assert by["continuity"].krippendorff_alpha == pytest.approx(16 / 21)
    assert by["continuity"].pairwise_agreement == pytest.approx(2 / 3)
    # gold (item 0): l1 matches input and continuity, misses output (2 vs 1, tolerance 0 on 0-2) and relative
    assert {s.labeler: s.gold_agreement for s in q.labelers} == {"l0": 1.0, "l1": 0.5}


def test_flags_are_yes_no_units_one_per_flag(custom_form_file: Path) -> None:
    form = load_form(str(custom_form_file))
    base = {"score": 5, "relevance": 0, "tone": "formal", "notes": "", "comment": "c"}
    rows = _rows([[{**base, "issues": ["factual_error"]}, {**base, "issues": ["factual_error", "off_topic"]}]])
    by = {f.field: f for f in project_quality(RatingKind(form), rows).fields}
    # units (item, factual_error) [yes, yes] and (item, off_topic) [no, yes]: o(y,y) = 2, o(n,y) = o(y,n) = 1;
    # n_y = 3, n_n = 1; D_o = 2/4, D_e = 2*3*1 / 12 = 1/2 -> alpha = 0; pairs alike: 1 of 2
    assert by["issues"].units == 2 and by["issues"].metric == "nominal"
    assert by["issues"].krippendorff_alpha == pytest.approx(0.0) and by["issues"].pairwise_agreement == 0.5
    assert by["tone"].krippendorff_alpha is None  # no variation: undefined


# ---------------------------------------------------------------- store, export, CLI, migration

def test_store_export_and_records_with_answers(store: LabelStore, tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="a form is for rating projects"):
        store.create_project("r", "ranking", form=REALTOXICITY)
    with pytest.raises(LabelError, match=r"project 'bad': fields\[0\] \(q\).type"):
        store.create_project("bad", "rating", form=[{"name": "q", "type": "slider"}])
    p = store.create_project("tox", "rating", form=REALTOXICITY)
    assert p.form == REALTOXICITY.to_json() and kind_of(store.project("tox")).form == REALTOXICITY
    ann = store.add_user("ann", PASSWORD)[0]
    store.add_rating_item("tox", "The weather today is", "sunny and warm.")
    item = store.next_item("tox", ann)
    with pytest.raises(LabelError, match="continuity: choose one of 1, 2, 3"):
        store.submit(ann, item.id, "tox-key-0001", {"input_toxicity": 0, "output_toxicity": 0, "relative_toxicity": 0})
    store.submit(ann, item.id, "tox-key-0001", {"input_toxicity": 0, "output_toxicity": 0, "relative_toxicity": -1,
                                                "continuity": 3, "notes": "fine"})
    (rec,) = collect_records(store, "tox")
    assert isinstance(rec, Rating) and rec.score is None and rec.notes == "fine" and rec.flags == ()
    assert rec.answers == {"input_toxicity": 0, "output_toxicity": 0, "relative_toxicity": -1, "continuity": 3}
    out = tmp_path / "tox.jsonl"
    write_records(out, [rec])
    assert read_records(out, expect=Rating) == [rec]
    # `rm --objective ratings` regresses the 1-7 score: a form without one is refused before any model loads
    assert main(["rm", "--model", str(tmp_path / "no-model"), "--data", str(out), "--objective", "ratings",
                 "--out", str(tmp_path / "rm")]) == 2


def test_cli_import_with_a_form(tmp_path: Path, custom_form_file: Path, capsys) -> None:
    db = str(tmp_path / "l.db")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "responses": ["a", "b"]}) + "\n")
    assert main(["label", "import", str(rows), "--db", db, "--project", "h", "--form", str(custom_form_file)]) == 0
    assert main(["label", "import", str(rows), "--db", db, "--project", "h", "--form", str(custom_form_file)]) == 0
    assert main(["label", "import", str(rows), "--db", db, "--project", "h", "--form", "realtoxicity"]) == 2
    assert "has the form 'helpfulness', which cannot change" in capsys.readouterr().err
    assert main(["label", "import", str(rows), "--db", db, "--project", "t", "--kind", "rating",
                 "--form", "realtoxicity"]) == 0
    assert main(["label", "import", str(rows), "--db", db, "--project", "d", "--kind", "rating"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(CUSTOM_YAML.replace("value: casual", "value: [casual]"))
    assert main(["label", "import", str(rows), "--db", db, "--project", "b", "--form", str(bad)]) == 2
    assert f"{bad}: fields[2] (tone).options[1].value: expected an integer or a string" in capsys.readouterr().err
    store = LabelStore.open(db)
    h, t, d = store.project("h"), store.project("t"), store.project("d")
    assert (h.kind, h.form["name"], len(store.item_ids("h"))) == ("rating", "helpfulness", 4)  # a 2-response row, twice
    assert t.form == REALTOXICITY.to_json() and d.form is None and kind_of(d).form is INSTRUCTGPT
    store.close()


def test_a_store_at_0003_upgrades_keeping_every_row(sqlite_url: str) -> None:
    old = LabelStore.open(sqlite_url, migrate=False)
    old.migrate("0003")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, role, active, created_at) "
                          "VALUES (1, 'ann', 'labeler', 1, '2025-01-01')"))
        conn.execute(text("INSERT INTO projects (id, name, kind, labels_per_item, gold_every, active_selection, "
                          "markdown, created_at, min_chars) VALUES (1, 'p', 'rating', 1, 10, 0, 0, '2025-01-01', 0)"))
        conn.execute(text("INSERT INTO items (id, project_id, prompt, responses, is_gold, priority, meta, created_at) "
                          "VALUES (1, 1, 'old prompt', '[\"r\"]', 0, 0.0, '{}', '2025-01-01')"))
        conn.execute(text("INSERT INTO assignments (id, item_id, user_id, served_at, answered) "
                          "VALUES (1, 1, 1, '2025-01-01', 1)"))
        conn.execute(text("INSERT INTO answers (id, item_id, user_id, client_key, payload, seconds_wall, created_at) "
                          "VALUES (1, 1, 1, 'old-key-0001', '{\"score\": 5, \"flags\": [\"moral_judgment\"], "
                          "\"notes\": \"hm\"}', 2.0, '2025-01-01')"))
    old.close()
    store = LabelStore.open(sqlite_url)
    p = store.project("p")
    assert p.form is None and kind_of(p).form is INSTRUCTGPT  # an old project keeps InstructGPT's form
    assert store.item(1).prompt == "old prompt" and store.count_answers() == 1
    (rec,) = collect_records(store)
    assert (rec.score, rec.flags, rec.notes, rec.answers) == (5, ("moral_judgment",), "hm", {})
    store.create_project("new", "rating", form=REALTOXICITY)
    assert store.project("new").form["name"] == "realtoxicity"
    store.close()


# ---------------------------------------------------------------- the web app

def test_task_page_api_and_admin_page(store: LabelStore, make_browser, custom_form_file: Path) -> None:
    store.create_project("h", "rating", labels_per_item=2, form=load_form(str(custom_form_file)))
    store.add_rating_item("h", "What is 2 + 2?", "5, <b>surely</b>.")
    ann = make_browser("ann")
    page = ann.open_next("h")
    assert 'name="relevance" value="-2" data-key="1"' in page.text and "-2 = off topic" in page.text
    assert 'data-key="x"' in page.text and 'data-key="o"' in page.text and "One sentence on why" in page.text
    answer = {"score": "3", "relevance": "-1", "tone": "casual", "issues": ["factual_error", "off_topic"]}
    r = ann.submit(page, answer)  # the required comment is missing: the page comes back, filled in
    assert r.status_code == 400 and "comment: write something here" in r.text
    assert len(re.findall(r'value="(factual_error|off_topic)" data-key="\w"\s+checked', r.text)) == 2
    assert re.search(r'value="casual" data-key="2"\s+required checked', r.text)
    assert ann.submit(page, {**answer, "comment": "Wrong sum."}).status_code == 303
    bob = make_browser("bob")
    item = bob.client.get("/api/v1/projects/h/next").json()["item"]
    assert item["form"]["name"] == "helpfulness" and [f["name"] for f in item["form"]["fields"]][:2] == [
        "score", "relevance"]
    post = {"item_id": item["id"], "client_key": "bob-key-0001", "seconds_active": 3.0}
    r = bob.client.post("/api/v1/answers", headers={"x-csrf-token": bob.csrf},
                        json={**post, "answer": {"score": 3, "relevance": 1, "tone": "rude", "comment": "x", "x": 1}})
    assert r.status_code == 400 and "x: not a field of the helpfulness form" in r.json()["error"]
    r = bob.client.post("/api/v1/answers", headers={"x-csrf-token": bob.csrf},
                        json={**post, "answer": {"score": 3, "relevance": 1, "tone": "rude", "comment": "x"}})
    assert r.status_code == 200
    root = make_browser("root", "admin")
    admin = root.client.get("/admin/p/h").text
    assert "Agreement by field" in admin
    # score 3 and 3: no variation (alpha undefined); relevance -1 vs 1: one unit; issues [x, o] vs []: 0 of 2 alike
    assert '<td class="alpha">–</td>' in re.search(r'id="field-score">(.*?)</tr>', admin, re.S).group(1)
    assert re.search(r'id="field-relevance"><td>relevance</td><td>likert</td><td>interval</td><td>1</td>', admin)
    assert re.search(r'id="field-issues">.*?<td>2</td>\s*<td>0.00</td>', admin, re.S)
    assert 'id="field-comment"' not in admin  # free text has no agreement


def test_custom_form_filled_by_keyboard_in_a_browser(store: LabelStore, live_server: str, chromium: Any,
                                                     custom_form_file: Path, tmp_path: Path) -> None:
    form = load_form(str(custom_form_file))
    store.add_user("ann", PASSWORD)
    store.create_project("h", "rating", form=form, instructions="Rate **helpfulness**.")
    store.add_rating_item("h", "What is the capital of Australia?", "Sydney, the largest city.")
    context, page, problems = _page(chromium, live_server)
    _sign_in(page, "ann")
    page.goto("/p/h/next?start=1")
    focused = "document.querySelector('fieldset.field.focus').dataset.field"
    assert page.evaluate(focused) == "score"  # the first question has the focus
    page.keyboard.press("6")  # score 6, and the focus moves on
    assert page.evaluate(focused) == "relevance"
    page.keyboard.press("5")  # relevance's 5th point: 2
    page.keyboard.press("2")  # tone: casual (the last question keeps the focus)
    assert page.evaluate(focused) == "tone"
    page.keyboard.press("k")  # back up to relevance
    page.keyboard.press("2")  # its 2nd point: -1
    page.keyboard.press("x")  # flag: factual error
    page.keyboard.press("o")
    page.keyboard.press("o")  # off topic, on and off again
    page.keyboard.press("i")  # the instructions dialog; a task key does nothing behind it
    page.keyboard.press("1")
    page.keyboard.press("i")
    page.keyboard.press("n")  # into the notes
    page.keyboard.type("Confident tone")
    page.keyboard.press("Escape")
    page.keyboard.press("n")  # the next text box: the comment
    page.keyboard.type("Canberra is the capital.")
    page.keyboard.press("Escape")
    assert page.is_checked('input[name="tone"][value="casual"]') and page.is_checked('input[name="score"][value="6"]')
    page.keyboard.press("Enter")
    page.wait_for_selector("#done")
    assert problems == []
    context.close()

    (ans,) = [a for answers in store.answers_for(store.item_ids("h")).values() for a in answers]
    expected = {"score": 6, "relevance": -1, "tone": "casual", "issues": ["factual_error"], "notes": "Confident tone",
                "comment": "Canberra is the capital."}
    assert ans.payload == expected and form.validate_answer(ans.payload) == expected  # the answer validates
    out = tmp_path / "labels.jsonl"
    assert main(["label", "export", "--db", store.engine.url.database, "--out", str(out)]) == 0
    (rec,) = read_records(out, expect=Rating)
    assert (rec.score, rec.flags, rec.notes, rec.labeler) == (6, (), "Confident tone", "ann")
    assert rec.answers == {"relevance": -1, "tone": "casual", "issues": ["factual_error"],
                           "comment": "Canberra is the capital."}
    assert rec.meta["seconds"] > 0
