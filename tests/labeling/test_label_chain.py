"""The user's chain: `rlhfkit sample` -> `label import` -> labelers answer (a scripted
labeler over the JSON API) -> `label export` -> `rlhfkit rm --data` trains on the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.labeling.store import LabelStore


@pytest.mark.timeout(600)
def test_sample_import_label_export_rm(tmp_path: Path, tiny_lm: Path) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    samples, db, labels = tmp_path / "samples.jsonl", str(tmp_path / "labels.db"), tmp_path / "labels.jsonl"
    assert main(["sample", "--policy", str(tiny_lm), "--n-prompts", "24", "--k", "3", "--output", str(samples),
                 "--out", str(tmp_path / "sample_run"), "--set", "max_new_tokens=12"]) == 0
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert rows[0]["type"] == "completions" and len(rows[0]["responses"]) == 3
    assert main(["label", "import", str(samples), "--db", db, "--project", "reviews", "--kind", "ranking"]) == 0

    store = LabelStore.open(db)
    _user, token = store.add_user("scripted", token=True)
    client = TestClient(create_app(store), base_url="http://localhost")
    auth = {"authorization": f"Bearer {token}"}
    answered = 0
    while (item := client.get("/api/v1/projects/reviews/next", headers=auth).json()["item"]) is not None:
        lengths = [len(r) for r in item["responses"]]  # the scripted taste: shorter is better
        ranks = [sorted(set(lengths)).index(n) for n in lengths]
        r = client.post("/api/v1/answers", headers=auth, json={"item_id": item["id"], "answer": {"ranks": ranks},
                                                               "client_key": f"scripted-{item['id']:06d}"})
        assert r.status_code == 200
        answered += 1
    assert answered == len(rows) == 24

    assert main(["label", "export", "--db", db, "--out", str(labels)]) == 0
    assert len(labels.read_text().splitlines()) == 24
    assert main(["rm", "--model", str(tiny_lm), "--data", str(labels), "--out", str(tmp_path / "rm"),
                 "--set", "optim.max_steps=3", "--set", "optim.batch_size=8", "--task", "none"]) == 0
    summary = json.loads((tmp_path / "rm" / "summary.json").read_text())
    assert summary["train_examples"] > 0 and (tmp_path / "rm" / "final").is_dir()
