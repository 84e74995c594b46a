"""Load test of the labeling app: N concurrent labelers submit labels (pairwise choices) and
write demonstrations over loopback to a server this script starts (`rlhfkit label serve`),
and the server is killed (SIGKILL) once midway and restarted. Every answer the server
acknowledged must be in the database, once, and every demonstration as it was written.

    python benchmarks/label_load.py        # 20 labelers, 2,000 pairwise labels + 2,000 demonstrations, SQLite
    python benchmarks/label_load.py --db postgresql://user:pw@127.0.0.1/db
    python benchmarks/label_load.py --no-kill
    python benchmarks/label_load.py --demos 0             # pairwise labels alone (as before)

Two projects: a pairwise one (--labels items) and a demonstration one (--demos prompts,
`min_chars` 40). Each labeler uses the JSON API with its own token and works on both queues,
interleaved: GET the next item, POST an answer with a fresh client key, and on any transport
error or 5xx retry the *same* key until the server answers (so an answer committed just
before the kill is acknowledged as a duplicate on retry, not stored twice). A demonstration
is 60-600 characters of text; before submitting about half of them (--draft-share) the
labeler autosaves 1-3 drafts (growing prefixes of the text, `POST /api/v1/items/{id}/draft`,
50 ms apart), as the task page does while one types. While the server is down, the drafts
it acknowledged for demonstrations not yet submitted are read back from the database: each
must be there (or a later draft, or the submitted answer). Traffic goes only to 127.0.0.1; every loop is
bounded by --deadline.

The output is a table per kind, a line on the kill and the drafts, and last
`RESULT submitted=... stored=... lost=... labels_per_s=... demos_acknowledged=... demos_stored=...
demos_lost=... drafts_saved=... drafts_lost=...`: submitted is the pairwise labels
acknowledged, stored their rows in the database, lost the acknowledged client keys missing
from it; labels_per_s counts acknowledged pairwise labels over the whole run, restart
included (the demonstrations share that time); demos_* the same for demonstrations (a stored
text that differs from the one written counts as lost); drafts_saved the drafts acknowledged,
drafts_lost those missing at the kill. In the table, retries counts the POSTs (answers and
drafts) sent again after a transport error; duplicate acks the retries the server answered
with an answer it had already stored.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

HOST = "127.0.0.1"  # loopback only
MIN_CHARS = 40  # the demonstration project's shortest answer
TYPING_S = 0.05  # a pause after each autosaved draft (the labeler typing on)
WORDS = ("the light bends when it enters a drop of water and each colour bends by a different amount "
         "so white sunlight spreads into a band of colours that we see as an arc in the sky opposite "
         "the sun because every drop sends one colour to your eye at its own angle").split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`rlhfkit label serve` in a child process, killed and restarted on demand."""

    def __init__(self, db: str, port: int, log: Path) -> None:
        self.db, self.port, self.log = db, port, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        # `python -m rlhfkit.labeling serve` is `rlhfkit label serve` without loading the
        # training commands, so a restart after the kill takes about a second
        cmd = [sys.executable, "-m", "rlhfkit.labeling", "serve", "--db", self.db, "--host", HOST,
               "--port", str(self.port)]
        env = dict(os.environ, RLHFKIT_PROGRESS="0")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=env)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"http://{HOST}:{self.port}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start in {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Tally:
    """What the labelers of one kind were told: acknowledged client keys (with a demonstration's
    text), retries, errors, latencies; for demonstrations the drafts acknowledged and those
    not yet followed by an acknowledged answer (item id -> the last draft's text)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, str | None] = {}
        self.duplicates = 0
        self.retries = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.drafts = 0
        self.drafted_answers = 0
        self.pending_drafts: dict[int, str] = {}

    def ack(self, key: str, text: str | None, duplicate: bool, seconds: float) -> None:
        with self.lock:
            self.acked[key] = text
            self.duplicates += duplicate
            self.latencies.append(seconds)

    def retry(self) -> None:
        with self.lock:
            self.retries += 1

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


@dataclass
class Queue:
    """One labeler's share of one project."""

    kind: str  # "pairwise" | "demonstration"
    project: str
    quota: int
    tally: Tally
    done: int = 0
    empty: bool = False


_DEADLINE = object()


def _lease(c: httpx.Client, project: str, deadline: float) -> object:
    """The next item (a dict), None when the queue is empty, _DEADLINE past the deadline."""
    while time.monotonic() < deadline:
        try:
            r = c.get(f"/api/v1/projects/{project}/next")
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if r.status_code != 200:
            time.sleep(0.05)
            continue
        return r.json()["item"]
    return _DEADLINE


def _post(c: httpx.Client, path: str, body: dict, tally: Tally, deadline: float) -> httpx.Response | None:
    """POST `body`, again and again while the server is down or answers 5xx; None past the deadline."""
    while time.monotonic() < deadline:
        try:
            r = c.post(path, json=body)
        except httpx.TransportError:
            tally.retry()
            time.sleep(0.05)
            continue
        if r.status_code >= 500:
            time.sleep(0.05)
            continue
        return r
    return None


def _demo_text(item_id: int, rng: random.Random) -> str:
    """A demonstration as a labeler might write it: 60-600 characters, some lines, no trailing space."""
    n = rng.randint(60, 600)
    words: list[str] = [f"Item {item_id}:"]
    while sum(len(w) + 1 for w in words) < n:
        words.append(rng.choice(WORDS) + ("\n" if rng.random() < 0.05 else ""))
    text = " ".join(words)[:n].rstrip()
    return text + "." if len(text) < MIN_CHARS else text


def _labeler(base: str, token: str, queues: list[Queue], deadline: float, draft_share: float, seed: int,
             on_ack: Callable[[], None]) -> None:
    headers = {"authorization": f"Bearer {token}"}
    rng = random.Random(seed)
    with httpx.Client(base_url=base, headers=headers, timeout=10.0) as c:
        while time.monotonic() < deadline:
            open_ = [q for q in queues if q.done < q.quota and not q.empty]
            if not open_:
                break
            q = min(open_, key=lambda q: q.done / q.quota)  # interleave the kinds, in proportion
            item = _lease(c, q.project, deadline)
            if item is _DEADLINE:
                break
            if item is None:
                q.empty = True
                continue
            text = None
            if q.kind == "demonstration":
                text = _demo_text(item["id"], rng)
                if rng.random() < draft_share and not _drafts(c, item["id"], text, q.tally, rng, deadline):
                    break
                answer = {"text": text}
            else:
                answer = {"choice": "A"}
            body = {"item_id": item["id"], "client_key": uuid.uuid4().hex, "answer": answer, "seconds_active": 1.0}
            started = time.monotonic()
            r = _post(c, "/api/v1/answers", body, q.tally, deadline)  # retries the same key until answered
            if r is None:
                break
            if r.status_code == 200:
                q.done += 1
                with q.tally.lock:
                    q.tally.pending_drafts.pop(item["id"], None)
                q.tally.ack(body["client_key"], text, r.json()["duplicate"], time.monotonic() - started)
                on_ack()
            else:
                q.tally.error(f"{r.status_code} {r.text[:200]}")


def _drafts(c: httpx.Client, item_id: int, text: str, tally: Tally, rng: random.Random, deadline: float,
            typing: float = TYPING_S) -> bool:
    """Autosave 1-3 growing prefixes of `text`, `typing` seconds apart; False past the deadline."""
    cuts = sorted(rng.sample(range(1, len(text)), min(rng.randint(1, 3), len(text) - 1)))
    for cut in cuts:
        r = _post(c, f"/api/v1/items/{item_id}/draft", {"text": text[:cut]}, tally, deadline)
        if r is None:
            return False
        if r.status_code != 200:
            tally.error(f"draft: {r.status_code} {r.text[:200]}")
            continue
        with tally.lock:
            tally.drafts += 1
            tally.pending_drafts[item_id] = text[:cut]
        time.sleep(typing)  # typing on before the next autosave (or the submit)
    with tally.lock:
        tally.drafted_answers += 1
    return True


def _drafts_lost(db: str, pending: dict[int, str]) -> int:
    """Drafts acknowledged for demonstrations not yet submitted that the database lacks: it
    must hold that draft, a later one (longer, same start), or the answer (which clears it)."""
    from sqlalchemy import select

    from rlhfkit.labeling.models import Assignment
    from rlhfkit.labeling.store import LabelStore

    if not pending:
        return 0
    store = LabelStore.open(db, migrate=False)
    try:
        with store._tx() as s:
            leases = {a.item_id: a for a in s.scalars(select(Assignment).where(Assignment.item_id.in_(list(pending))))}
    finally:
        store.close()
    return sum(1 for item_id, text in pending.items()
               if not (item_id in leases and (leases[item_id].answered or (leases[item_id].draft or "").startswith(text))))


def _stored(db: str, project: str) -> tuple[dict[str, str | None], int, int, int]:
    """A project's answers as {client key: the demonstration's text, or None}, the row count,
    the leases left open, and the answered leases still holding a draft."""
    from sqlalchemy import func, select

    from rlhfkit.labeling.models import Answer, Assignment, Item, Project
    from rlhfkit.labeling.store import LabelStore

    store = LabelStore.open(db, migrate=False)
    try:
        with store._tx() as s:
            pid = s.scalar(select(Project.id).where(Project.name == project))
            rows = list(s.execute(select(Answer.client_key, Answer.payload).join(Item, Item.id == Answer.item_id)
                                  .where(Item.project_id == pid)))
            leases = select(func.count(Assignment.id)).join(Item, Item.id == Assignment.item_id).where(
                Item.project_id == pid)
            open_leases = s.scalar(leases.where(Assignment.answered.is_(False)))
            drafts_left = s.scalar(leases.where(Assignment.answered.is_(True), Assignment.draft.is_not(None)))
    finally:
        store.close()
    return {k: (p or {}).get("text") for k, p in rows}, len(rows), open_leases, drafts_left


def _summary(tally: Tally, stored: dict[str, str | None], rows: int, demos: bool) -> dict:
    lost = sum(1 for k in tally.acked if k not in stored)
    altered = sum(1 for k, t in tally.acked.items() if demos and k in stored and stored[k] != t)
    lat = sorted(tally.latencies) or [0.0]
    return {"acknowledged": len(tally.acked), "stored": rows, "lost": lost + altered, "altered": altered,
            "double_stored": rows - len(stored), "duplicate_acks": tally.duplicates, "retries": tally.retries,
            "errors": tally.errors[:5], "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))]}


def _shares(total: int, n: int) -> list[int]:
    return [total // n + (i < total % n) for i in range(n)]


def run(labelers: int, labels: int, db: str | None, kill: bool, deadline_s: float, demos: int = 0,
        draft_share: float = 0.5, seed: int = 0) -> dict:
    from rlhfkit.labeling.kinds import NewItem
    from rlhfkit.labeling.store import LabelStore

    tmp = Path(tempfile.mkdtemp(prefix="label_load_"))
    db = db or str(tmp / "labels.db")
    project = "load-" + uuid.uuid4().hex[:8]
    demo_project = project + "-demos"
    store = LabelStore.open(db)
    store.create_project(project, "pairwise", labels_per_item=1)
    store.add_items(project, [_item(n) for n in range(labels)])
    if demos:
        store.create_project(demo_project, "demonstration", labels_per_item=1, min_chars=MIN_CHARS,
                             instructions="Write the response the assistant should give.")
        store.add_items(demo_project, [NewItem(f"Explain rainbows to a child ({n}).", (), context="The child is 6.")
                                       for n in range(demos)])
    tokens = [store.add_user(f"{project}-u{i}", token=True)[1] for i in range(labelers)]
    store.close()
    tallies = {"pairwise": Tally(), "demonstration": Tally()}
    queues = [[Queue("pairwise", project, q, tallies["pairwise"])] for q in _shares(labels, labelers)]
    for qs, q in zip(queues, _shares(demos, labelers)):
        if q:
            qs.append(Queue("demonstration", demo_project, q, tallies["demonstration"]))

    server = Server(db, _free_port(), tmp / "server.log")
    server.start()
    kill_at = (labels + demos) // 2 if kill else -1
    acks = [0]
    ack_lock = threading.Lock()
    restarted = threading.Event()
    restart_s = [0.0]
    at_kill = {"drafts_pending": 0, "drafts_lost": 0}

    def on_ack() -> None:
        with ack_lock:
            acks[0] += 1
            if acks[0] != kill_at or restarted.is_set():
                return
            restarted.set()
        t0 = time.monotonic()
        server.kill()  # mid-load: requests in flight fail, clients retry their keys
        demo_tally = tallies["demonstration"]
        with demo_tally.lock:
            pending = dict(demo_tally.pending_drafts)
        at_kill["drafts_pending"], at_kill["drafts_lost"] = len(pending), _drafts_lost(db, pending)
        server.start()
        restart_s[0] = time.monotonic() - t0

    base = f"http://{HOST}:{server.port}"
    start = time.monotonic()
    deadline = start + deadline_s
    threads = [threading.Thread(target=_labeler, args=(base, tokens[i], queues[i], deadline, draft_share,
                                                       seed * 1000 + i, on_ack)) for i in range(labelers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    server.stop()

    stored, rows, _open, _left = _stored(db, project)
    pairwise = _summary(tallies["pairwise"], stored, rows, demos=False)
    if demos:
        stored, rows, open_leases, drafts_left = _stored(db, demo_project)
    else:
        stored, rows, open_leases, drafts_left = {}, 0, 0, 0
    demo = _summary(tallies["demonstration"], stored, rows, demos=True)
    dt = tallies["demonstration"]
    return {
        **pairwise, "submitted": pairwise["acknowledged"], "demos": demo,
        "drafts_saved": dt.drafts, "drafted_answers": dt.drafted_answers, "drafts_left": drafts_left,
        "open_demo_leases": open_leases, **at_kill,
        "killed": restarted.is_set(), "restart_s": restart_s[0], "elapsed_s": elapsed,
        "labels_per_s": pairwise["acknowledged"] / elapsed if elapsed else 0.0,
        "demos_per_s": demo["acknowledged"] / elapsed if elapsed else 0.0,
        "labelers": labelers, "db": "postgresql" if db.startswith("postgres") else "sqlite",
    }


def _item(n: int):
    from rlhfkit.labeling.kinds import NewItem

    return NewItem(f"prompt {n}", (f"response A{n}", f"response B{n}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelers", type=int, default=20)
    ap.add_argument("--labels", type=int, default=2000, help="pairwise labels (items of the pairwise project)")
    ap.add_argument("--demos", type=int, default=2000, help="demonstrations to write (0: none)")
    ap.add_argument("--draft-share", type=float, default=0.5,
                    help="share of the demonstrations whose drafts are autosaved before submitting")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--no-kill", action="store_true", help="do not kill the server midway")
    ap.add_argument("--deadline", type=float, default=600.0, help="stop every client after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    r = run(args.labelers, args.labels, args.db, not args.no_kill, args.deadline, args.demos, args.draft_share,
            args.seed)
    d = r["demos"]
    print(f"# {r['labelers']} labelers, {r['db']}, server killed midway: {r['killed']} "
          f"(back in {r['restart_s']:.2f} s); {r['elapsed_s']:.1f} s")
    print("| kind | asked | acknowledged | stored | lost | stored twice | duplicate acks | retries "
          "| p50 ms | p95 ms | per s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, asked, x, per_s in (("pairwise", args.labels, r, r["labels_per_s"]),
                                  ("demonstration", args.demos, d, r["demos_per_s"])):
        print(f"| {kind} | {asked} | {x['acknowledged']} | {x['stored']} | {x['lost']} | {x['double_stored']} "
              f"| {x['duplicate_acks']} | {x['retries']} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {per_s:.1f} |")
    print(f"# demonstrations: {r['drafted_answers']} written with autosaved drafts ({r['drafts_saved']} drafts "
          f"acknowledged); at the kill {r['drafts_pending']} drafted, not yet submitted: {r['drafts_lost']} "
          f"drafts missing; texts stored altered {d['altered']}; answered leases still holding a draft "
          f"{r['drafts_left']}; leases left open {r['open_demo_leases']}")
    print(f"# errors: pairwise {r['errors']} demonstration {d['errors']}")
    print(f"RESULT submitted={r['submitted']} stored={r['stored']} lost={r['lost']} "
          f"labels_per_s={r['labels_per_s']:.1f} demos_acknowledged={d['acknowledged']} "
          f"demos_stored={d['stored']} demos_lost={d['lost']} drafts_saved={r['drafts_saved']} "
          f"drafts_lost={r['drafts_lost']}")
    ok = (r["lost"] == 0 and r["stored"] == r["submitted"] == args.labels and r["double_stored"] == 0
          and d["lost"] == 0 and d["stored"] == d["acknowledged"] == args.demos and d["double_stored"] == 0
          and r["drafts_lost"] == 0 and r["drafts_left"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
