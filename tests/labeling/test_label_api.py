"""The web app through FastAPI's TestClient: sign-in, the three task forms, roles, CSRF,
security headers, escaping of untrusted text, clips served as media only, the JSON API."""

from __future__ import annotations

import html
import re

import pytest

from rlhfkit.labeling.kinds import NewItem
from rlhfkit.labeling.store import LabelStore

XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "<svg onload=window.__xss=1><circle r=9></circle></svg>",
    '"><script>window.__xss=1</script>',
    "'><img src=x onerror=window.__xss=1>",
    '<a href="javascript:window.__xss=1">click</a>',
    "[click me](javascript:window.__xss=1)",
    "<iframe src=\"javascript:window.__xss=1\"></iframe>",
    "<object data=\"data:text/html,<script>window.__xss=1</script>\"></object>",
    "{{ 7*7 }} {% raw %}",
]


def _setup(store: LabelStore) -> dict[str, int]:
    store.create_project("rank", "ranking")
    store.create_project("pair", "pairwise")
    store.create_project("rate", "rating")
    return {
        "rank": store.add_ranking_item("rank", "Rank these", ["first", "second", "third"]),
        "pair": store.add_pairwise_item("pair", "Compare", text_a="left", text_b="right"),
        "rate": store.add_rating_item("rate", "Rate this", "a response"),
    }


def test_sign_in_label_all_three_kinds_and_time_recorded(store: LabelStore, make_browser) -> None:
    ids = _setup(store)
    ann = make_browser("ann")
    page = ann.open_next("rank")
    assert page.status_code == 200 and 'data-kind="ranking"' in page.text
    r = ann.submit(page, {"rank_0": "2", "rank_1": "1", "rank_2": "2"})
    assert r.status_code == 303 and r.headers["location"] == "/p/rank/next"
    assert "All done" in ann.client.get("/p/rank/next").text
    page = ann.open_next("pair")
    assert ann.submit(page, {"choice": "B"}).status_code == 303
    page = ann.open_next("rate")
    fields = {"score": "6", "flags": ["harmful_advice", "moral_judgment"], "notes": "a <b>note</b>"}
    assert ann.submit(page, fields).status_code == 303
    got = store.answers_for(list(ids.values()))
    assert got[ids["rank"]][0].payload == {"ranks": [1, 0, 1]}
    assert got[ids["pair"]][0].payload == {"choice": "B"}
    assert got[ids["rate"]][0].payload == {"score": 6, "flags": ["harmful_advice", "moral_judgment"],
                                           "notes": "a <b>note</b>"}
    assert all(a[0].seconds_active == 1.5 and a[0].seconds_wall >= 0 for a in got.values())


def test_resubmitting_the_same_form_stores_one_answer(store: LabelStore, make_browser) -> None:
    _setup(store)
    ann = make_browser("ann")
    page = ann.open_next("pair")
    assert ann.submit(page, {"choice": "A"}).status_code == 303
    assert ann.submit(page, {"choice": "A"}).status_code == 303  # the same client key: a retry
    assert store.count_answers() == 1


def test_bad_answers_re_render_with_an_error(store: LabelStore, make_browser) -> None:
    _setup(store)
    ann = make_browser("ann")
    page = ann.open_next("rank")
    r = ann.submit(page, {"rank_0": "1", "rank_1": "2"})
    assert r.status_code == 400 and "give every response a rank" in r.text
    page = ann.open_next("rate")
    assert ann.submit(page, {"score": "8"}).status_code == 400
    assert store.count_answers() == 0


def test_login_failures_logout_and_open_redirect(store: LabelStore, make_browser) -> None:
    ann = make_browser("ann", login=False)
    assert ann.client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert ann.login("wrong password").status_code == 401
    page = ann.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = ann.client.post("/login", data={"username": "ann", "password": "correct horse battery", "csrf": token,
                                        "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    csrf = re.search(r'name="csrf" value="([^"]+)"', ann.client.get("/").text).group(1)
    assert ann.client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert ann.client.get("/", follow_redirects=False).status_code == 303


def test_login_form_needs_its_csrf_token(store: LabelStore, make_browser) -> None:
    ann = make_browser("ann", login=False)
    ann.client.get("/login")
    r = ann.client.post("/login", data={"username": "ann", "password": "correct horse battery", "csrf": "forged"},
                        follow_redirects=False)
    assert r.status_code == 403


def test_csrf_is_required_on_every_form_and_origin_checked(store: LabelStore, make_browser) -> None:
    _setup(store)
    ann = make_browser("ann")
    page = ann.open_next("pair")
    key = re.search(r'name="client_key" value="([^"]+)"', page.text).group(1)
    for csrf in ("", "forged-token"):
        r = ann.client.post(page.url.path, data={"csrf": csrf, "client_key": key, "choice": "A"})
        assert r.status_code == 403
    r = ann.client.post(page.url.path, data={"csrf": ann.csrf, "client_key": key, "choice": "A"},
                        headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = ann.client.post("/api/v1/answers", json={"item_id": 1, "client_key": key, "answer": {"choice": "A"}})
    assert r.status_code == 403  # the JSON API with a session cookie needs X-CSRF-Token too
    admin = make_browser("root", role="admin")
    r = admin.client.post("/admin/users", data={"username": "eve", "password": "password123", "role": "admin"})
    assert r.status_code == 403
    assert store.count_answers() == 0 and "eve" not in [u.username for u in store.users()]


def test_a_labeler_cannot_reach_admin_routes(store: LabelStore, make_browser) -> None:
    _setup(store)
    ann = make_browser("ann")
    for path in ("/admin", "/admin/p/rank", "/admin/export"):
        assert ann.client.get(path).status_code == 403
    for path in ("/admin/users", "/admin/users/ann/disable"):
        r = ann.client.post(path, data={"csrf": ann.csrf, "username": "eve", "password": "password123",
                                        "role": "admin"})
        assert r.status_code == 403
    assert [u.username for u in store.users()] == ["ann"] and store.user("ann").active


def test_anonymous_gets_login_or_401_everywhere(store: LabelStore, make_browser) -> None:
    ids = _setup(store)
    anon = make_browser("anon", login=False).client
    for path in ("/", "/p/rank/next", f"/p/rank/item/{ids['rank']}", "/admin", "/admin/export", "/media/1"):
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert anon.get("/api/v1/projects/rank/next").status_code == 401
    assert anon.post("/api/v1/answers", json={}).status_code in (401, 422)


def test_a_labeler_cannot_read_or_write_anothers_labels(store: LabelStore, make_browser) -> None:
    store.create_project("pair", "pairwise", labels_per_item=2)
    item = store.add_pairwise_item("pair", "Compare", text_a="left", text_b="right")
    ann, bob = make_browser("ann"), make_browser("bob")
    page = ann.open_next("pair")
    ann.submit(page, {"choice": "A"})
    # bob has not been served the item: he cannot open it, its answers, or answer it
    assert bob.client.get(f"/p/pair/item/{item}").status_code == 404
    assert bob.client.get(f"/api/v1/items/{item}").status_code == 404
    key = re.search(r'name="client_key" value="([^"]+)"', page.text).group(1)
    r = bob.client.post(f"/p/pair/item/{item}", data={"csrf": bob.csrf, "client_key": key, "choice": "B"})
    assert r.status_code == 404
    # once served, bob sees the item but never ann's answer; replaying ann's key is refused
    page_b = bob.open_next("pair")
    assert 'data-kind="pairwise"' in page_b.text and "ann" not in page_b.text and "checked" not in page_b.text
    assert bob.client.get(f"/api/v1/items/{item}").json()["answer"] is None
    r = bob.client.post(f"/p/pair/item/{item}", data={"csrf": bob.csrf, "client_key": key, "choice": "B"})
    assert r.status_code == 409
    assert [a.payload for a in store.answers_for([item])[item]] == [{"choice": "A"}]


def test_security_headers_on_pages_and_static(store: LabelStore, make_browser) -> None:
    _setup(store)
    ann = make_browser("ann")
    for r in (ann.client.get("/"), ann.open_next("rate"), ann.client.get("/static/label.js"),
              ann.client.get("/login")):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    page = ann.open_next("rank").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script on any task page
    assert not re.search(r"\son[a-z]+=", page)  # nor event-handler attributes


def test_session_cookie_flags(store: LabelStore) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    store.add_user("ann", "correct horse battery")
    app = create_app(store)
    for base, secure in (("http://localhost", False), ("https://labels.example", True),
                         ("http://labels.example", True)):
        c = TestClient(app, base_url=base)
        page = c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        c.cookies.set("rlhf_login", page.cookies.get("rlhf_login"))  # the client keeps Secure ones off plain http
        r = c.post("/login", data={"username": "ann", "password": "correct horse battery", "csrf": token},
                   follow_redirects=False)
        cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("rlhf_session=")][0].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert ("; secure" in cookie) == secure, base


@pytest.mark.parametrize("markdown", [False, True])
def test_untrusted_text_is_escaped_on_every_page(store: LabelStore, make_browser, markdown: bool) -> None:
    store.create_project("rank", "ranking", markdown=markdown)
    store.create_project("pair", "pairwise", markdown=markdown)
    store.create_project("rate", "rating", markdown=markdown)
    store.add_ranking_item("rank", XSS[0] + XSS[6], XSS[:9])
    store.add_pairwise_item("pair", XSS[3], text_a=XSS[1], text_b=XSS[5])
    store.add_rating_item("rate", XSS[4], XSS[2] + XSS[7])
    admin = make_browser("root", role="admin")
    pages = [admin.open_next(p).text for p in ("rank", "pair", "rate")]
    for p in ("rank", "pair", "rate"):
        admin.submit(admin.client.get(f"/p/{p}/item/{store.item_ids(p)[0]}"), {
            "rank": {f"rank_{i}": "1" for i in range(9)}, "pair": {"choice": "tie"},
            "rate": {"score": "4", "notes": XSS[1]}}[p])
    pages += [admin.client.get("/admin").text] + [admin.client.get(f"/admin/p/{p}").text
                                                  for p in ("rank", "pair", "rate")]
    for n, text in enumerate(pages):
        assert "window.__xss" in html.unescape(text) or n == 3  # shown as text (/admin lists no items)
        assert not re.search(r"<(script(?! src=\"/static/)|img|svg|iframe|object|embed)\b", text, re.I)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text, re.I)  # no event-handler attribute in any tag
        assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", text, re.I)
    assert "{{ 7*7 }}" not in pages[0] or "49" not in pages[0]


def test_media_is_served_as_media_only_to_assignees(store: LabelStore, make_browser, tmp_path) -> None:
    a, b = tmp_path / "a.gif", tmp_path / "b.webm"
    a.write_bytes(b"GIF89a" + b"\x01" * 16)
    b.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x02" * 16)
    store.create_project("clips", "pairwise")
    store.add_pairwise_item("clips", "Which is better?", a, b)
    ann, bob = make_browser("ann"), make_browser("bob")
    page = ann.open_next("clips")
    ids = re.findall(r'src="/media/(\d+)"', page.text)
    assert len(ids) == 2 and "<video" in page.text and "<img" in page.text
    r = ann.client.get(f"/media/{ids[0]}")
    assert r.status_code == 200 and r.content == a.read_bytes()
    assert r.headers["content-type"] == "image/gif" and r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["content-disposition"].startswith("inline")
    assert ann.client.get(f"/media/{ids[1]}").headers["content-type"] == "video/webm"
    assert bob.client.get(f"/media/{ids[0]}").status_code == 404  # not bob's item


def test_json_api_with_a_token(store: LabelStore) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.labeling.app import create_app

    ids = _setup(store)
    _user, token = store.add_user("bot", role="labeler", token=True)
    c = TestClient(create_app(store), base_url="http://localhost")
    h = {"authorization": f"Bearer {token}"}
    assert c.get("/api/v1/projects/rank/next", headers={"authorization": "Bearer nope"}).status_code == 401
    item = c.get("/api/v1/projects/rank/next", headers=h).json()["item"]
    assert item["id"] == ids["rank"] and item["responses"] == ["first", "second", "third"]
    body = {"item_id": item["id"], "client_key": "bot-key-00001", "answer": {"ranks": [0, 1, 2]},
            "seconds_active": 2.0}
    bad = dict(body, client_key="bot-key-00002", answer={"ranks": [0, 1]})
    r = c.post("/api/v1/answers", json=bad, headers=h)
    assert r.status_code == 400 and "one rank per response" in r.json()["error"]
    assert c.post("/api/v1/answers", json=body, headers=h).json()["duplicate"] is False
    assert c.post("/api/v1/answers", json=body, headers=h).json()["duplicate"] is True
    r = c.post("/api/v1/answers", json=dict(body, client_key="bot-key-00003"), headers=h)
    assert r.status_code == 409 and "already answered" in r.json()["error"]
    assert c.get("/api/v1/projects/rank/next", headers=h).json() == {"item": None}
    assert c.get("/admin", headers=h).status_code == 403


def test_admin_pages_users_and_export(store: LabelStore, make_browser) -> None:
    ids = _setup(store)
    store.add_ranking_item("rank", "gold one", ["x", "y"], gold={"ranks": [0, 1]})
    root, ann = make_browser("root", role="admin"), make_browser("ann")
    ann.submit(ann.open_next("rank"), {"rank_0": "1", "rank_1": "2", "rank_2": "3"})
    ann.submit(ann.open_next("rank"), {"rank_0": "2", "rank_1": "1"})  # the gold item, answered wrong
    page = root.client.get("/admin").text
    assert "ann" in page and "Krippendorff" in page
    assert "gold" in root.client.get("/admin/p/rank").text
    r = root.client.post("/admin/users", data={"csrf": root.csrf, "username": "cat", "password": "password123",
                                               "role": "labeler"}, follow_redirects=False)
    assert r.status_code == 303 and store.user("cat").role == "labeler"
    r = root.client.post("/admin/users/ann/disable", data={"csrf": root.csrf}, follow_redirects=False)
    assert r.status_code == 303 and not store.user("ann").active
    assert ann.client.get("/", follow_redirects=False).status_code == 303  # signed out
    rows = root.client.get("/admin/export").text.splitlines()
    assert len(rows) == 1 and '"type": "ranking"' in rows[0] and f'"item": {ids["rank"]}' in rows[0]
    assert root.client.get("/admin/export?min_gold_agreement=0.5").text == ""


def test_admin_item_list_is_paged(store: LabelStore, make_browser) -> None:
    store.create_project("big", "rating")
    store.add_items("big", [NewItem(f"prompt-{n:04d}", ("r",)) for n in range(150)])
    root = make_browser("root", role="admin")
    first, second = root.client.get("/admin/p/big").text, root.client.get("/admin/p/big?page=2").text
    assert "page 1 of 2" in first and "prompt-0099" in first and "prompt-0100" not in first
    assert "prompt-0100" in second and "prompt-0149" in second and "?page=1" in second
