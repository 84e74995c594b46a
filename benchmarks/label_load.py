"""Load test of the labeling app: N concurrent labelers submit labels over loopback to a
server this script starts (`rlhfkit label serve`), and the server is killed (SIGKILL) once
midway and restarted. Every label the server acknowledged must be in the database, once.

    python benchmarks/label_load.py                       # 20 labelers, 2,000 labels, SQLite
    python benchmarks/label_load.py --db postgresql://user:pw@127.0.0.1/db
    python benchmarks/label_load.py --no-kill

Each labeler uses the JSON API with its own token: GET the next item, POST an answer with a
fresh client key, and on any transport error or 5xx retry the *same* key until the server
answers (so a label committed just before the kill is acknowledged as a duplicate on retry,
not stored twice). Traffic goes only to 127.0.0.1; every loop is bounded by --deadline.

The last line is `RESULT submitted=... stored=... lost=... labels_per_s=...`: submitted is
the labels acknowledged, stored the rows in the database, lost the acknowledged client keys
missing from it; labels_per_s counts acknowledged labels over the whole run, restart included.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only


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
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.duplicates = 0
        self.retries = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []

    def ack(self, key: str, duplicate: bool, seconds: float) -> int:
        with self.lock:
            self.acked.append(key)
            self.duplicates += duplicate
            self.latencies.append(seconds)
            return len(self.acked)


def _labeler(base: str, project: str, token: str, quota: int, tally: Tally, deadline: float,
             on_ack: "callable") -> None:
    headers = {"authorization": f"Bearer {token}"}
    done = 0
    with httpx.Client(base_url=base, headers=headers, timeout=10.0) as c:
        while done < quota and time.monotonic() < deadline:
            try:
                r = c.get(f"/api/v1/projects/{project}/next")
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if r.status_code != 200:
                time.sleep(0.05)
                continue
            item = r.json()["item"]
            if item is None:
                break
            body = {"item_id": item["id"], "client_key": uuid.uuid4().hex, "answer": {"choice": "A"},
                    "seconds_active": 1.0}
            started = time.monotonic()
            while time.monotonic() < deadline:  # retry the same key until the server answers
                try:
                    r = c.post("/api/v1/answers", json=body)
                except httpx.TransportError:
                    with tally.lock:
                        tally.retries += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    done += 1
                    on_ack(tally.ack(body["client_key"], r.json()["duplicate"], time.monotonic() - started))
                elif r.status_code >= 500:
                    time.sleep(0.05)
                    continue
                else:
                    with tally.lock:
                        tally.errors.append(f"{r.status_code} {r.text[:200]}")
                break


def run(labelers: int, labels: int, db: str | None, kill: bool, deadline_s: float) -> dict:
    from sqlalchemy import select

    from rlhfkit.labeling.models import Answer, Item, Project
    from rlhfkit.labeling.store import LabelStore

    tmp = Path(tempfile.mkdtemp(prefix="label_load_"))
    db = db or str(tmp / "labels.db")
    project = "load-" + uuid.uuid4().hex[:8]
    store = LabelStore.open(db)
    store.create_project(project, "pairwise", labels_per_item=1)
    store.add_items(project, [_item(n) for n in range(labels)])
    tokens = [store.add_user(f"{project}-u{i}", token=True)[1] for i in range(labelers)]
    quotas = [labels // labelers + (i < labels % labelers) for i in range(labelers)]
    store.close()

    server = Server(db, _free_port(), tmp / "server.log")
    server.start()
    tally = Tally()
    kill_at = labels // 2 if kill else -1
    restarted = threading.Event()
    restart_s = [0.0]

    def on_ack(n: int) -> None:
        if n == kill_at and not restarted.is_set():
            restarted.set()
            t0 = time.monotonic()
            server.kill()  # mid-load: requests in flight fail, clients retry their keys
            server.start()
            restart_s[0] = time.monotonic() - t0

    base = f"http://{HOST}:{server.port}"
    start = time.monotonic()
    deadline = start + deadline_s
    threads = [threading.Thread(target=_labeler, args=(base, project, tokens[i], quotas[i], tally, deadline, on_ack))
               for i in range(labelers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    server.stop()

    store = LabelStore.open(db)
    with store._tx() as s:
        stored_keys = list(s.scalars(select(Answer.client_key).join(Item, Item.id == Answer.item_id)
                                     .join(Project, Project.id == Item.project_id).where(Project.name == project)))
    store.close()
    acked = set(tally.acked)
    lat = sorted(tally.latencies) or [0.0]
    return {
        "submitted": len(acked), "stored": len(stored_keys), "lost": len(acked - set(stored_keys)),
        "double_stored": len(stored_keys) - len(set(stored_keys)), "duplicate_acks": tally.duplicates,
        "retries": tally.retries, "errors": tally.errors[:5], "killed": restarted.is_set(),
        "restart_s": restart_s[0], "elapsed_s": elapsed, "labels_per_s": len(acked) / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
        "labelers": labelers, "db": "postgresql" if db.startswith("postgres") else "sqlite",
    }


def _item(n: int):
    from rlhfkit.labeling.kinds import NewItem

    return NewItem(f"prompt {n}", (f"response A{n}", f"response B{n}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelers", type=int, default=20)
    ap.add_argument("--labels", type=int, default=2000)
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--no-kill", action="store_true", help="do not kill the server midway")
    ap.add_argument("--deadline", type=float, default=300.0, help="stop every client after this many seconds")
    args = ap.parse_args()
    r = run(args.labelers, args.labels, args.db, not args.no_kill, args.deadline)
    print(f"# {r['labelers']} labelers, {r['db']}, server killed midway: {r['killed']} "
          f"(back in {r['restart_s']:.2f} s); {r['elapsed_s']:.1f} s; retries {r['retries']}; "
          f"duplicate acks {r['duplicate_acks']}; stored twice {r['double_stored']}; "
          f"latency p50 {r['p50_ms']:.1f} ms p95 {r['p95_ms']:.1f} ms; errors {r['errors']}")
    print(f"RESULT submitted={r['submitted']} stored={r['stored']} lost={r['lost']} "
          f"labels_per_s={r['labels_per_s']:.1f}")
    ok = r["lost"] == 0 and r["stored"] == r["submitted"] == args.labels and r["double_stored"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
