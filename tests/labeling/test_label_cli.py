"""`rlhfkit label users|import|export`, and the load benchmark (small: pairwise labels and
demonstrations, SQLite and PostgreSQL) with a server kill."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.labeling.store import LabelStore

ROOT = Path(__file__).resolve().parents[2]


def test_users_add_list_disable(tmp_path: Path, monkeypatch, capsys) -> None:
    db = str(tmp_path / "l.db")
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert main(["label", "users", "add", "root", "--db", db, "--role", "admin", "--password-stdin"]) == 0
    assert main(["label", "users", "add", "bot", "--db", db, "--token"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"API token .*: (\S+)", out).group(1)
    assert main(["label", "users", "disable", "bot", "--db", db]) == 0
    assert main(["label", "users", "list", "--db", db]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[-2:] == ["root\tadmin\tactive\tpassword", "bot\tlabeler\tdisabled\ttoken"]
    store = LabelStore.open(db)
    assert store.authenticate("root", "a long password") is not None and store.user_for_token(token) is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["label", "users", "add", "eve", "--db", db, "--password-stdin"]) == 2  # a clear error, no trace


def test_import_then_export_via_the_cli(tmp_path: Path) -> None:
    db, samples, out = str(tmp_path / "l.db"), tmp_path / "s.jsonl", tmp_path / "labels.jsonl"
    samples.write_text(json.dumps({"type": "completions", "prompt": "p", "responses": ["a", "b"], "policy": None})
                       + "\n")
    assert main(["label", "import", str(samples), "--db", db, "--project", "p", "--kind", "pairwise",
                 "--labels-per-item", "2"]) == 0
    assert main(["label", "import", str(samples), "--db", db, "--project", "p", "--kind", "ranking"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "responses": ["a", "b"]}\n{"prompt": "p", "responses": []}\n')
    assert main(["label", "import", str(bad), "--db", db, "--project", "p"]) == 2  # nothing imported (below)
    store = LabelStore.open(db)
    assert store.project("p").labels_per_item == 2 and len(store.item_ids("p")) == 1
    user = store.add_user("ann", "password123")[0]
    item = store.next_item("p", user)
    store.submit(user, item.id, "cli-key-0001", {"choice": "B"})
    assert main(["label", "export", "--db", db, "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert (row["type"], row["chosen"], row["rejected"], row["labeler"]) == ("comparison", "b", "a", "ann")


RESULT_LINE = re.compile(r"RESULT submitted=(\d+) stored=(\d+) lost=(\d+) labels_per_s=([\d.]+) "
                         r"demos_acknowledged=(\d+) demos_stored=(\d+) demos_lost=(\d+) "
                         r"drafts_saved=(\d+) drafts_lost=(\d+)")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_load_benchmark_small_with_a_kill(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Pairwise labels and demonstrations (some with autosaved drafts) under load, the server
    killed midway: every acknowledged answer stored once, every demonstration's text as written."""
    db = ["--db", request.getfixturevalue("pg_url")] if backend == "postgresql" else []
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "label_load.py"), "--labelers", "6",
                        "--labels", "120", "--demos", "60", "--deadline", "200", *db],
                       capture_output=True, text=True, timeout=280)
    last = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout + r.stderr
    m = RESULT_LINE.fullmatch(last)
    assert m and m.group(1) == m.group(2) == "120" and m.group(3) == "0", last
    assert m.group(5) == m.group(6) == "60" and m.group(7) == "0", last
    assert int(m.group(8)) > 0 and m.group(9) == "0", last  # drafts were saved, none missing at the kill
    assert "server killed midway: True" in r.stdout
    assert re.search(r"^\| demonstration \| 60 \| 60 \| 60 \| 0 \| 0 \|", r.stdout, re.M), r.stdout
