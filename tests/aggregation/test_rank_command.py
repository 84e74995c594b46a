"""`rlhfkit rank` end to end, and its input errors."""

import json

import pytest

from rlhfkit.aggregation.commands import read_comparisons
from rlhfkit.cli import main
from rlhfkit.feedback.formats import FormatError


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rank_writes_summary_heatmap_and_prints_winners(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    rows = ([{"winner": "alpha", "loser": "beta"}] * 3 + [{"winner": "beta", "loser": "alpha"}]
            + [{"winner": "beta", "loser": "gamma"}] * 3 + [{"winner": "gamma", "loser": "beta"}]
            + [{"winner": "alpha", "loser": "gamma"}] * 2 + [{"winner": "gamma", "loser": "alpha"}]
            + [{"type": "ranking", "prompt": "p", "responses": ["alpha", "beta", "gamma"], "ranks": [0, 1, 1]}]
            + [{"prompt": "p", "chosen": "alpha", "rejected": "beta"}])
    src = _write(tmp_path / "cmp.jsonl", rows)
    out = tmp_path / "run"
    assert main(["rank", str(src), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["condorcet"] == "alpha" and summary["copeland"] == ["alpha"] and summary["borda"] == ["alpha"]
    assert summary["scores"]["alpha"] > summary["scores"]["beta"] > summary["scores"]["gamma"]
    assert abs(sum(summary["scores"].values())) < 1e-9
    assert (out / "preference_matrix.png").stat().st_size > 1000 and (out / "config.yaml").exists()
    printed = capsys.readouterr().out
    assert "condorcet winner: alpha" in printed and "borda winner(s): alpha" in printed


def test_rank_without_condorcet_winner_writes_null(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    cycle = [{"winner": "r", "loser": "s"}] * 2 + [{"winner": "s", "loser": "r"}]
    cycle += [{"winner": "s", "loser": "p"}] * 2 + [{"winner": "p", "loser": "s"}]
    cycle += [{"winner": "p", "loser": "r"}] * 2 + [{"winner": "r", "loser": "p"}]
    src = _write(tmp_path / "c.jsonl", cycle)
    assert main(["rank", str(src), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["condorcet"] is None and sorted(summary["copeland"]) == ["p", "r", "s"]


def test_rank_errors_name_file_line_field(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"winner": "a", "loser": "b"}, {"winner": "a"}])
    with pytest.raises(FormatError, match=r"bad.jsonl:2: field 'loser'"):
        read_comparisons(bad)
    rating = _write(tmp_path / "r.jsonl", [{"prompt": "p", "response": "x", "score": 3}])
    with pytest.raises(FormatError, match="r.jsonl:1.*rating"):
        read_comparisons(rating)


def test_rank_cli_reports_divergent_mle(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    src = _write(tmp_path / "one.jsonl", [{"winner": "a", "loser": "b"}])
    assert main(["rank", str(src), "--out", str(tmp_path / "o")]) == 2  # a never loses: needs --l2
    assert main(["rank", str(src), "--out", str(tmp_path / "o"), "--l2", "1.0"]) == 0


def test_rank_davidson_and_reliability_options(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_PROGRESS", "0")
    rows = []
    for lab in ("ann", "bob"):
        rows += [{"winner": "x", "loser": "y", "labeler": lab}] * 3 + [{"winner": "y", "loser": "x", "labeler": lab}]
        rows += [{"winner": "y", "loser": "z", "labeler": lab}] * 3 + [{"winner": "z", "loser": "x", "labeler": lab}]
        rows += [{"winner": "x", "loser": "z", "labeler": lab, "tie": True}]
    src = _write(tmp_path / "t.jsonl", rows)
    out = tmp_path / "d"
    assert main(["rank", str(src), "--out", str(out), "--ties", "davidson", "--reliability"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["tie_model"] == "davidson" and s["nu"] > 0
    assert set(s["labeler_weights"]) == {"ann", "bob"} and s["scores"]["x"] > s["scores"]["z"]
