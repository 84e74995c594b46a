"""`rlhfkit label refresh` and `rlhfkit label rounds`: fresh items from the current policy
written through the store, and the whole loop with simulated labelers answering over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the labeling app needs `pip install rlhfkit[label]`")
pytest.importorskip("sqlalchemy", reason="the labeling app needs `pip install rlhfkit[label]`")

from rlhfkit.cli import main  # noqa: E402
from rlhfkit.errors import UserError  # noqa: E402
from rlhfkit.labeling.store import LabelStore  # noqa: E402
from rlhfkit.rounds import refresh_items  # noqa: E402
from rlhfkit.tasks.base import load_task, task_prompts  # noqa: E402


@pytest.fixture(scope="module")
def policy(tiny_lm):
    from rlhfkit.lm.models import load_policy

    return load_policy(tiny_lm)


def test_refresh_adds_ranking_items_for_the_next_prompts(tmp_path, policy) -> None:
    store = LabelStore.open(str(tmp_path / "labels.db"))
    store.create_project("p", "ranking")
    task = load_task("reviews")
    first = refresh_items(store, "p", *policy, task, n_prompts=3, k=3, policy_name="pi-1", max_new_tokens=8)
    second = refresh_items(store, "p", *policy, task, n_prompts=2, k=3, policy_name="pi-2", max_new_tokens=8)
    items = [store.item(i) for i in first + second]
    assert len(first) == 3 and len(second) == 2
    assert all(len(it.responses) == 3 and it.project.kind == "ranking" for it in items)
    assert [it.meta["prompt_index"] for it in items] == [0, 1, 2, 3, 4]  # new prompts, never the same draw twice
    assert [it.meta["round"] for it in items] == [1, 1, 1, 2, 2]
    assert [it.prompt for it in items] == task_prompts(task, 5, "rm")
    assert [it.policy for it in items] == ["pi-1"] * 3 + ["pi-2"] * 2
    store.close()


def test_refresh_splits_into_pairs_in_a_pairwise_project_and_refuses_other_kinds(tmp_path, policy) -> None:
    store = LabelStore.open(str(tmp_path / "labels.db"))
    store.create_project("pairs", "pairwise")
    ids = refresh_items(store, "pairs", *policy, load_task("reviews"), n_prompts=2, k=3, round_=7, max_new_tokens=8)
    items = [store.item(i) for i in ids]
    assert len(items) == 2 * 3  # C(3, 2) pairs per prompt
    assert all(len(it.responses) == 2 and it.meta["round"] == 7 for it in items)
    assert [it.meta["responses_index"] for it in items[:3]] == [[0, 1], [0, 2], [1, 2]]
    store.create_project("rate", "rating")
    with pytest.raises(UserError, match="rating project"):
        refresh_items(store, "rate", *policy, load_task("reviews"), n_prompts=1, k=2)
    store.close()


def test_refresh_command(tmp_path, tiny_lm) -> None:
    db = str(tmp_path / "labels.db")
    args = ["label", "refresh", "--db", db, "--project", "fresh", "--policy", str(tiny_lm), "--k", "2",
            "--n-prompts", "3", "--set", "max_new_tokens=8"]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 0
    assert json.loads((tmp_path / "r1" / "summary.json").read_text())["items"] == 3
    assert main([*args, "--kind", "pairwise", "--out", str(tmp_path / "r2")]) == 2  # the project is a ranking one
    store = LabelStore.open(db)
    assert store.project("fresh").kind == "ranking" and len(store.item_ids("fresh")) == 3
    store.close()


def test_the_app_imports_no_model_and_no_trainer() -> None:
    code = ("import sys, rlhfkit.labeling.app, rlhfkit.labeling.client, rlhfkit.labeling.__main__\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('rlhfkit.lm', 'rlhfkit.algos', 'rlhfkit.rounds',"
            " 'torch', 'transformers')))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rounds_loop_end_to_end(tmp_path, tiny_lm) -> None:
    out = tmp_path / "rounds"
    assert main(["label", "rounds", "--fast", "--policy", str(tiny_lm), "--rounds", "2", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in s["rounds"]] == [0, 1, 2] and len(s["gold"]) == 3
    assert s["acknowledged"] == s["stored"] == 2 * 12 and s["lost"] == 0  # every item answered once, none lost
    for r in s["rounds"][1:]:
        assert r["answers"] == r["items"] == 12 and r["lost"] == 0 and "heldout_accuracy" in r["reward_model"]
    assert (out / "gold_by_round.png").stat().st_size > 1000
    assert "| 2 |" in (out / "report.md").read_text()
    labels = (out / "round-2" / "labels_all.jsonl").read_text().splitlines()
    assert len(labels) == 24 and all(json.loads(x)["type"] == "ranking" for x in labels)


def test_a_dpo_round_trains_from_the_current_policy_on_the_rounds_labels(tmp_path, tiny_lm) -> None:
    from rlhfkit.feedback.formats import write_records
    from rlhfkit.feedback.records import Comparison
    from rlhfkit.rounds import RoundsConfig, _policy_step

    labels = tmp_path / "labels_round.jsonl"
    write_records(labels, [Comparison(f"Write a review of the kettle. {i}", " great kettle", " awful kettle")
                           for i in range(8)])
    cfg = RoundsConfig(method="dpo", dpo_epochs=1.0)
    policy, rm = _policy_step(cfg, tmp_path, str(tiny_lm), str(tiny_lm), tmp_path / "unused.jsonl", labels,
                              {"seed": 0, "log": [], "device": "cpu"})
    assert rm is None and policy == str(tmp_path / "dpo" / "final")
    assert (tmp_path / "dpo" / "final" / "config.json").exists()
