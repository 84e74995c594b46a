"""A client of the app's JSON API, a server in a child process, and simulated labelers that
answer through them: what a script needs to drive the app as labelers do (the rounds loop,
`rlhfkit label rounds`), with nothing but the standard library on the client side.

    with LocalServer("labels.db") as server:
        acks = answer_queue(server.url, "proj", token, simulated_answer(labeler, gold, rng))

A labeler leases the next item (`GET /api/v1/projects/P/next`), answers it
(`POST /api/v1/answers` with a fresh client key) and, on a transport error or a 5xx, retries
the *same* key until the server answers: a label committed just before a failure comes back
as a duplicate, never stored twice (the guarantee `benchmarks/label_load.py` measures).
The simulated labelers are `feedback.labelers.SimulatedLabeler`s handed the gold scorer by
the caller; this module imports no task and no model.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rlhfkit.feedback.labelers import SimulatedLabeler
from rlhfkit.feedback.records import prompt_text

HOST = "127.0.0.1"  # the child server listens on loopback only
# (prompt text, responses) -> their gold scores: the caller's gold scorer (a task's `gold.batch`)
GoldBatch = Callable[[str, Sequence[str]], Sequence[float]]
# an item as the API gives it -> the answer payload to post
Judge = Callable[[dict[str, Any]], dict[str, Any]]


class ApiError(RuntimeError):
    """The server answered with a 4xx: the request itself is wrong, and a retry would not help."""


@dataclass(frozen=True)
class Ack:
    """An answer the server acknowledged: its id in the store, and whether it was a retry's."""

    item_id: int
    answer_id: int
    client_key: str
    duplicate: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LocalServer:
    """`python -m rlhfkit.labeling serve` (the `label serve` command alone, without the training
    commands) on a free loopback port, in a child process; stopped on exit from the `with`."""

    def __init__(self, db: str, log: str | Path | None = None, port: int | None = None) -> None:
        self.db, self.log, self.port = db, Path(log) if log else None, port or _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> "LocalServer":
        cmd = [sys.executable, "-m", "rlhfkit.labeling", "serve", "--db", self.db, "--host", HOST,
               "--port", str(self.port)]
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                         env=dict(os.environ, RLHFKIT_PROGRESS="0"))
        finally:
            if self.log:
                err.close()  # the child holds its own handle
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the label server exited with {self.proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1.0) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the label server did not start in {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM (uvicorn finishes the requests in flight), SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "LocalServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None,
          timeout: float = 30.0) -> dict[str, Any]:
    """One API call; ApiError on a 4xx; urllib's errors (transport, 5xx) for the caller to retry."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500:
            raise ApiError(f"{method} {path}: {e.code} {e.read()[:300].decode(errors='replace')}") from None
        raise


def _retrying(fn: Callable[[], dict[str, Any]], deadline: float) -> dict[str, Any]:
    while True:
        try:
            return fn()
        except ApiError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):  # down, 5xx, cut off
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def answer_queue(base: str, project: str, token: str, judge: Judge, deadline_s: float = 600.0,
                 limit: int | None = None) -> list[Ack]:
    """Answer `project`'s queue as the token's labeler until it is empty (or `limit` answers, or
    `deadline_s` has passed): lease, judge, post with a fresh client key, retrying that key until
    the server answers."""
    deadline = time.monotonic() + deadline_s
    acks: list[Ack] = []
    while (limit is None or len(acks) < limit) and time.monotonic() < deadline:
        item = _retrying(lambda: _call(base, token, "GET", f"/api/v1/projects/{project}/next"), deadline)["item"]
        if item is None:
            break
        body = {"item_id": item["id"], "client_key": uuid.uuid4().hex, "answer": judge(item), "seconds_active": 1.0}
        r = _retrying(lambda: _call(base, token, "POST", "/api/v1/answers", body), deadline)
        acks.append(Ack(item["id"], int(r["answer_id"]), body["client_key"], bool(r["duplicate"])))
    return acks


def simulated_answer(labeler: SimulatedLabeler, gold: GoldBatch, rng: random.Random) -> Judge:
    """A judge answering ranking and pairwise items as `labeler` would, from the gold scores
    of the shown responses (Plackett-Luce rankings, Bradley-Terry choices; feedback/labelers.py)."""
    def judge(item: dict[str, Any]) -> dict[str, Any]:
        prompt, shown = item["prompt"], list(item["responses"])
        golds = list(gold(prompt_text(prompt), shown))
        if item["kind"] == "ranking":
            ranking = labeler.rank(prompt, shown, golds, rng)
            return {"ranks": _shown_ranks(shown, ranking.responses, ranking.ranks)}
        if item["kind"] == "pairwise":
            c = labeler.compare(prompt, shown[0], shown[1], golds[0], golds[1], rng)
            return {"choice": "tie" if c.tie else ("A" if c.chosen == shown[0] else "B")}
        raise ApiError(f"simulated labelers answer ranking and pairwise items, not {item['kind']}")
    return judge


def _shown_ranks(shown: Sequence[str], ordered: Sequence[str], ranks: Sequence[int] | None) -> list[int]:
    """Ranks per shown response from a best-first ordering (equal texts take the next free slot)."""
    ranks = ranks if ranks is not None else range(len(ordered))
    out: list[int | None] = [None] * len(shown)
    for text, rank in zip(ordered, ranks):
        i = next(j for j, s in enumerate(shown) if s == text and out[j] is None)
        out[i] = rank
    return [int(r) for r in out]  # type: ignore[arg-type]
