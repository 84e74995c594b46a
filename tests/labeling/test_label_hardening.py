"""Sign-in rate limits (per account, per client address) and idle sessions, through FastAPI's
TestClient with an injected clock, so no test sleeps."""

from __future__ import annotations

import re
import time
from typing import Any, Iterator

import pytest

from rlhfkit.labeling.ratelimit import LoginLimiter, LoginLimits
from rlhfkit.labeling.store import LabelStore

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client_at(store: LabelStore, clock: Clock) -> Iterator[Any]:
    """client_at(address, **create_app kwargs) -> a TestClient whose requests come from `address`."""
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    apps: dict[tuple, Any] = {}
    clients = []

    def make(address: str, limits: LoginLimits = LoginLimits(3, 10, 60.0), idle: float | None = 60.0) -> Any:
        key = (limits, idle)
        if key not in apps:  # clients with the same settings share one app (and its limiter)
            apps[key] = create_app(store, login_limits=limits, idle_timeout=idle, clock=clock)
        c = TestClient(apps[key], base_url="http://localhost", client=(address, 50000))
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def _login(client: Any, username: str, password: str, **headers: str) -> Any:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf": token, "next": "/"},
                       headers=headers, follow_redirects=False)


def _spy_authenticate(store: LabelStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = store.authenticate

    def spy(username: str, password: str) -> Any:
        calls.append(username)
        return real(username, password)

    monkeypatch.setattr(store, "authenticate", spy)
    return calls


def test_a_burst_of_wrong_passwords_gets_429_and_the_right_one_works_after_the_window(
        store: LabelStore, client_at, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_user("ann", PASSWORD)
    store.add_user("bob", PASSWORD)
    checked = _spy_authenticate(store, monkeypatch)
    ann = client_at("10.0.0.1")
    assert [_login(ann, "ann", "wrong password").status_code for _ in range(3)] == [401, 401, 401]
    r = _login(ann, "ann", "wrong password")
    assert r.status_code == 429 and r.headers["retry-after"] == "60" and "Too many failed sign-ins" in r.text
    assert 'name="csrf"' in r.text  # still a sign-in page to come back to
    clock.advance(20)
    r = _login(ann, "ann", PASSWORD, accept="application/json")  # the right password is not even checked
    assert r.status_code == 429 and r.headers["retry-after"] == "40"
    assert r.json() == {"error": "Too many failed sign-ins. Try again in 40 seconds.", "retry_after": 40}
    assert checked == ["ann"] * 3

    bob = client_at("10.0.0.2")  # another account from another address: unaffected
    assert _login(bob, "bob", PASSWORD).status_code == 303

    clock.advance(40)  # the window has passed
    assert _login(ann, "ann", PASSWORD).status_code == 303
    assert ann.get("/", follow_redirects=False).status_code == 200
    # the success cleared the account's failures: a slip of the finger is a 401 again, not a 429
    assert _login(client_at("10.0.0.1"), "ann", "wrong password").status_code == 401


def test_the_per_address_limit_catches_many_accounts_from_one_address(store: LabelStore, client_at) -> None:
    store.add_user("ann", PASSWORD)
    limits = LoginLimits(per_account=3, per_address=5, window=60.0)
    spray = client_at("10.0.0.9", limits)
    codes = [_login(spray, f"user{i}", "password1").status_code for i in range(5)]  # names that exist or not
    assert codes == [401] * 5
    r = _login(spray, "user99", "password1")
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 60
    assert _login(spray, "ann", PASSWORD).status_code == 429  # the address is limited, whoever it names
    assert _login(client_at("10.0.0.10", limits), "ann", PASSWORD).status_code == 303


def test_a_success_takes_back_only_its_own_count() -> None:
    clock = Clock()
    limiter = LoginLimiter(LoginLimits(per_account=2, per_address=3, window=10.0), clock)
    assert limiter.attempt("eve", "1.2.3.4") == 0  # wrong
    clock.advance(1)
    assert limiter.attempt("ann", "1.2.3.4") == 0  # right
    limiter.succeeded("ann", "1.2.3.4")
    for _ in range(20):  # successes never use up an address's budget
        assert limiter.attempt("ann", "1.2.3.4") == 0
        limiter.succeeded("ann", "1.2.3.4")
    assert limiter.attempt("mallory", "1.2.3.4") == 0  # wrong
    assert limiter.attempt("eve", "1.2.3.4") == 0  # wrong: the address's third failure
    assert limiter.attempt("ann", "1.2.3.4") == 9  # 10 s after the first failure, 1 s has passed
    clock.advance(9)
    assert limiter.attempt("ann", "1.2.3.4") == 0


def test_an_idle_session_expires_and_an_active_one_does_not(store: LabelStore, client_at, clock: Clock) -> None:
    store.add_user("ann", PASSWORD)
    store.add_user("bob", PASSWORD)
    ann, bob = client_at("10.0.0.1", idle=60.0), client_at("10.0.0.2", idle=60.0)
    assert _login(ann, "ann", PASSWORD).status_code == 303 and _login(bob, "bob", PASSWORD).status_code == 303
    bob_cookie = bob.cookies.get("rlhf_session")
    for _ in range(5):  # ann keeps working: 200 s in all, never 60 s idle
        clock.advance(40)
        assert ann.get("/", follow_redirects=False).status_code == 200
    r = bob.get("/api/v1/projects")  # bob left 200 s ago
    assert r.status_code == 401 and "expired" in r.json()["error"]
    assert bob.cookies.get("rlhf_session") is None and store.session_user(bob_cookie) is None  # signed out

    clock.advance(61)  # now ann is idle too
    r = ann.get("/p/x/next", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/p/x/next&expired=1"
    assert ann.cookies.get("rlhf_session") is None
    assert "Your session expired" in ann.get(r.headers["location"]).text
    assert _login(ann, "ann", PASSWORD).status_code == 303  # and signing in again works
    assert ann.get("/", follow_redirects=False).status_code == 200


def test_idle_timeout_off_keeps_sessions(store: LabelStore, client_at, clock: Clock) -> None:
    store.add_user("ann", PASSWORD)
    ann = client_at("10.0.0.1", idle=None)
    assert _login(ann, "ann", PASSWORD).status_code == 303
    clock.advance(6 * 24 * 3600)  # under the 7-day lifetime
    assert ann.get("/", follow_redirects=False).status_code == 200
