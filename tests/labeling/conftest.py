"""Fixtures for the labeling tests: stores on SQLite and PostgreSQL, a signed-in test
client, and a headless Chromium.

PostgreSQL tests use $RLHFKIT_TEST_PG_URL (each test gets a schema of its own); browser
tests use Debian's chromium at $RLHFKIT_CHROMIUM or /usr/bin/chromium, driven by
Playwright. Both skip with the reason when absent, unless $RLHFKIT_REQUIRE_PG or
$RLHFKIT_REQUIRE_BROWSER is 1 (as .ci/run sets), where absence fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("fastapi", reason="the labeling app needs `pip install rlhfkit[label]`")
pytest.importorskip("sqlalchemy", reason="the labeling app needs `pip install rlhfkit[label]`")

from rlhfkit.labeling.store import LabelStore  # noqa: E402

PG_URL = os.environ.get("RLHFKIT_TEST_PG_URL")
PASSWORD = "correct horse battery"


def _absent(what: str, env: str, how: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required here ({env}=1) but absent: {how}")
    pytest.skip(f"{what} absent: {how}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "labels.db")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database, dropped afterwards."""
    if not PG_URL:
        _absent("PostgreSQL", "RLHFKIT_REQUIRE_PG",
                "set RLHFKIT_TEST_PG_URL=postgresql://user:pw@127.0.0.1/db (.ci/run starts a server and sets it)")
    from sqlalchemy import create_engine, text

    from rlhfkit.labeling.store import normalize_url

    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(normalize_url(PG_URL))
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - a server that is configured but down
        admin.dispose()
        _absent("PostgreSQL", "RLHFKIT_REQUIRE_PG", f"cannot reach {PG_URL}: {e}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[LabelStore]:
    s = LabelStore.open(sqlite_url)
    yield s
    s.close()


@pytest.fixture
def any_store(any_url: str) -> Iterator[LabelStore]:
    s = LabelStore.open(any_url)
    yield s
    s.close()


class Browser:
    """A signed-in TestClient with the page's CSRF token, as one labeler."""

    def __init__(self, client: Any, username: str) -> None:
        self.client, self.username, self.csrf = client, username, ""

    def login(self, password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = self.client.post("/login", data={"username": self.username, "password": password, "csrf": token,
                                             "next": "/"}, follow_redirects=False)
        if r.status_code == 303:
            self.csrf = re.search(r'name="csrf" value="([^"]+)"', self.client.get("/").text).group(1)
        return r

    def open_next(self, project: str) -> Any:
        r = self.client.get(f"/p/{project}/next", follow_redirects=False)
        if r.status_code != 303:
            return r
        return self.client.get(r.headers["location"])

    def submit(self, page: Any, fields: dict[str, Any]) -> Any:
        key = re.search(r'name="client_key" value="([^"]+)"', page.text).group(1)
        data = {"csrf": self.csrf, "client_key": key, "active_seconds": "1.5", **fields}
        return self.client.post(page.url.path, data=data, follow_redirects=False)


@pytest.fixture
def make_browser(store: LabelStore) -> Any:
    """make_browser(username, role) -> a signed-in Browser on a fresh TestClient."""
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    app = create_app(store)
    clients = []

    def make(username: str, role: str = "labeler", login: bool = True) -> Browser:
        try:
            store.user(username)
        except Exception:  # noqa: BLE001 - not there yet
            store.add_user(username, PASSWORD, role)
        client = TestClient(app, base_url="http://localhost")
        clients.append(client)
        b = Browser(client, username)
        if login:
            assert b.login().status_code == 303
        return b

    yield make
    for c in clients:
        c.close()


def chromium_path() -> str:
    path = os.environ.get("RLHFKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _absent("Chromium", "RLHFKIT_REQUIRE_BROWSER", "apt-get install chromium (or set RLHFKIT_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (no browser download)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _absent("Playwright", "RLHFKIT_REQUIRE_BROWSER", "pip install playwright")
    path = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def live_server(store: LabelStore) -> Iterator[str]:
    """The app under uvicorn on a loopback port, in a thread; yields its base URL."""
    import threading
    import time

    import uvicorn

    from rlhfkit.labeling.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
