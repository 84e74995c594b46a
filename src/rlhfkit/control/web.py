"""The web labeler: segments rendered to clips and queued as pairwise items in the labeling
app's store (`rlhfkit.labeling.store.LabelStore`), answers read back as they arrive.

Same interface as `SyntheticLabeler`, so `--labeler web` is the only change. Clips are
written locally (OUT/clips) and the store keeps their bytes; the app serves them.
Answers map to mu: "A" -> 1, "B" -> 0, "tie" -> 0.5; "cant_tell" is dropped (the paper
discards comparisons the human marks incomparable).
"""

from __future__ import annotations

import time
from pathlib import Path

from rlhfkit.control.queries import Query
from rlhfkit.control.render import render_segment
from rlhfkit.logging import get_logger

log = get_logger(__name__)
CHOICE_MU = {"A": 1.0, "B": 0.0, "tie": 0.5}
PROMPT = "Which clip shows the agent doing better at the task?"


class WebLabeler:
    """Queue pairs in the labeling app; read answers when they come."""

    name = "web"

    def __init__(self, store, project: str, env_id: str, clips_dir: str | Path, timeout: float = 3600.0,
                 poll_s: float = 2.0, clip_format: str = "gif") -> None:
        from rlhfkit.labeling.store import Conflict

        self.store, self.project, self.env_id = store, project, env_id
        self.clips_dir = Path(clips_dir)
        self.timeout, self.poll_s, self.clip_format = timeout, poll_s, clip_format
        self._waiting: dict[int, Query] = {}
        try:
            store.create_project(project, "pairwise", labels_per_item=1)
        except Conflict:
            pass

    @classmethod
    def from_config(cls, cfg, out_dir: str | None) -> "WebLabeler":
        from rlhfkit.errors import UserError

        try:
            from rlhfkit.labeling.store import LabelStore
        except ImportError as e:  # the `label` extra is not installed
            raise UserError(f"--labeler web needs the labeling app (pip install 'rlhfkit[label]'): {e}") from e
        db = cfg.web_db or str(Path(out_dir or ".") / "labels.db")
        project = f"control-{cfg.env}-s{cfg.seed}".replace("/", "-")
        clips = cfg.clips_dir or str(Path(out_dir or ".") / "clips")
        log.info("web labeler: project %s in %s; serve it with `rlhfkit label serve --db %s`", project, db, db)
        return cls(LabelStore.open(db), project, cfg.env, clips, timeout=cfg.web_timeout)

    def request(self, queries: list[Query]) -> None:
        for q in queries:
            a = render_segment(self.env_id, q.a, self.clips_dir / f"q{q.id}-a.{self.clip_format}")
            b = render_segment(self.env_id, q.b, self.clips_dir / f"q{q.id}-b.{self.clip_format}")
            item = self.store.add_pairwise_item(self.project, PROMPT, a, b, meta={"query_id": q.id})
            self._waiting[item] = q

    def answers(self, wait: bool = False) -> list[tuple[Query, float]]:
        deadline = time.monotonic() + (self.timeout if wait else 0.0)
        while True:
            out = self._collect()
            if out or not wait or not self._waiting or time.monotonic() >= deadline:
                return out
            time.sleep(self.poll_s)

    def _collect(self) -> list[tuple[Query, float]]:
        out = []
        for item, views in self.store.answers_for(list(self._waiting)).items():
            if not views:
                continue
            q = self._waiting.pop(item)
            mu = CHOICE_MU.get(views[0].payload.get("choice"))
            if mu is not None:
                out.append((q, mu))
        return out

    def pending(self) -> int:
        return len(self._waiting)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the outstanding queries by their item id in the store, so a
        resumed run still collects the answers given to them (answers live in the store)."""
        return {"waiting": dict(self._waiting)}

    def load_state_dict(self, state: dict) -> None:
        self._waiting = dict(state["waiting"])
