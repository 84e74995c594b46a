"""Project instructions (InstructGPT's labeling interface): Markdown rendered with no raw HTML,
no scripts and only safe links (rel="noopener noreferrer"), shown before the first task and one
keypress (i) away on every task, with the labeler's progress and the time on the page. Tested
with the test client and in a real headless Chromium."""

from __future__ import annotations

import re
from typing import Any

from test_label_browser import _page  # tests/labeling is on sys.path

from rlhfkit.labeling.store import LabelStore

PASSWORD = "correct horse battery"
INSTRUCTIONS = """# How to compare

Pick the **more helpful** response. See [the guide](https://example.org/guide) or <https://example.org/faq>.

<script>window.__xss=1</script>
<img src=x onerror="window.__xss=1">
<iframe src="javascript:window.__xss=1"></iframe>
<a href="javascript:window.__xss=1">raw link</a>

- [click me](javascript:window.__xss=1)
- [data](data:text/html,<script>window.__xss=1</script>)
- [ref][evil] and {{ 7*7 }}

[evil]: javascript:window.__xss=1
"""


def _project(store: LabelStore, kind: str = "pairwise", name: str = "pair") -> None:
    store.create_project(name, kind, instructions=INSTRUCTIONS)


def test_instructions_render_inert_and_come_before_the_first_task(store: LabelStore, make_browser) -> None:
    _project(store)
    store.add_pairwise_item("pair", "Which is kinder?", text_a="Thanks!", text_b="Whatever.")
    store.add_pairwise_item("pair", "Which is clearer?", text_a="It is 4.", text_b="Maybe 4?")
    ann = make_browser("ann")
    r = ann.client.get("/p/pair/next", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/p/pair/instructions"
    page = ann.client.get("/p/pair/instructions").text
    body = page[page.index('<div class="md instructions-body">'):page.index('id="start"')]
    assert "<script" not in body and "<img" not in body and "<iframe" not in body and "javascript:" not in \
        "".join(re.findall(r'href="([^"]*)"', body))
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in body and "{{ 7*7 }}" in body
    links = re.findall(r"<a [^>]*>", body)
    assert len(links) == 2 and all('rel="noopener noreferrer"' in a and 'href="https://example.org/' in a
                                   for a in links)
    assert "<h1>How to compare</h1>" in body and "<strong>more helpful</strong>" in body
    r = ann.client.get("/p/pair/next?start=1", follow_redirects=False)
    task = ann.client.get(r.headers["location"]).text
    assert "item 1 of 2" in task and 'id="show-instructions"' in task and '<dialog id="instructions"' in task
    assert ann.submit(ann.client.get(r.headers["location"]), {"choice": "A"}).status_code == 303
    r = ann.client.get("/p/pair/next", follow_redirects=False)  # started: no detour any more
    assert r.headers["location"].startswith("/p/pair/item/")
    assert "item 2 of 2" in ann.client.get(r.headers["location"]).text


def test_every_task_kind_shows_progress_and_instructions(store: LabelStore, make_browser) -> None:
    for kind in ("ranking", "rating"):
        _project(store, kind, kind)
    store.add_ranking_item("ranking", "p", ["a", "b"])
    store.add_rating_item("rating", "p", "a")
    ann = make_browser("ann")
    for kind in ("ranking", "rating"):
        r = ann.client.get(f"/p/{kind}/next?start=1", follow_redirects=False)
        page = ann.client.get(r.headers["location"]).text
        assert f'data-kind="{kind}"' in page and "item 1 of 1" in page and 'id="instructions"' in page


def test_project_without_instructions_has_no_detour(store: LabelStore, make_browser) -> None:
    store.create_project("plain", "rating")
    store.add_rating_item("plain", "p", "a")
    ann = make_browser("ann")
    r = ann.client.get("/p/plain/next", follow_redirects=False)
    assert r.headers["location"].startswith("/p/plain/item/")
    page = ann.client.get(r.headers["location"]).text
    assert "show-instructions" not in page and "item 1 of 1" in page


# ---------------------------------------------------------------- in a real browser

def test_instructions_in_a_browser_inert_and_one_key_away(store: LabelStore, live_server: str,
                                                          chromium: Any) -> None:
    from playwright.sync_api import expect

    store.add_user("ann", PASSWORD)
    _project(store)
    first = store.add_pairwise_item("pair", "Which is kinder?", text_a="Thanks!", text_b="Whatever.")
    second = store.add_pairwise_item("pair", "Which is clearer?", text_a="It is 4.", text_b="Maybe 4?")
    context, page, problems = _page(chromium, live_server)
    page.goto("/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")

    injected = ("main script, main img, main svg, main iframe, main object, main embed, main [onerror], "
                "main [onload], main a[href^='javascript' i], main a[href^='data' i]")

    def inert(where: str) -> None:
        page.wait_for_timeout(100)
        assert page.evaluate("window.__xss") is None, where
        assert page.eval_on_selector_all(injected, "els => els.length") == 0, where
        for link in page.locator(".instructions-body a").all():
            assert link.get_attribute("rel") == "noopener noreferrer", where
            assert (link.get_attribute("href") or "").startswith("https://example.org/"), where

    page.goto("/p/pair/next")  # the instructions come first
    page.wait_for_url("**/p/pair/instructions")
    inert("instructions page")
    body = page.inner_text(".instructions-body")
    assert "<script>window.__xss=1</script>" in body and "{{ 7*7 }}" in body  # shown as text
    assert page.locator(".instructions-body a").count() == 2
    page.click("#start")
    page.wait_for_url(f"**/p/pair/item/{first}")
    assert page.inner_text("#progress") == "item 1 of 2"
    assert page.is_visible(".timer")
    dialog = page.locator("dialog#instructions")
    assert not dialog.is_visible()
    page.keyboard.press("i")  # one keypress away
    expect(dialog).to_be_visible()
    inert("instructions dialog")
    page.keyboard.press("1")  # no task key acts behind the dialog
    page.wait_for_timeout(200)
    assert store.count_answers() == 0 and page.url.endswith(f"/item/{first}")
    page.keyboard.press("i")
    expect(dialog).to_be_hidden()
    page.keyboard.press("1")  # A is better
    page.wait_for_url(f"**/p/pair/item/{second}")
    assert page.inner_text("#progress") == "item 2 of 2"
    page.click("#show-instructions")  # the link opens the same dialog (no new tab)
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("2")
    page.wait_for_selector("#done")
    assert store.count_answers() == 2 and len(context.pages) == 1
    assert problems == []
    context.close()
