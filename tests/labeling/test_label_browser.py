"""End to end in a real headless Chromium (Debian's, driven by Playwright): a labeler signs
in and labels a ranking, a pairwise clip comparison and a rating with the keyboard, and the
export holds their labels; classic XSS payloads in model text never execute."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from rlhfkit.feedback.records import Comparison, Ranking, Rating
from rlhfkit.labeling.export import collect_records
from rlhfkit.labeling.store import LabelStore

from test_label_api import XSS  # noqa: E402  (same folder; pytest puts it on sys.path)

PASSWORD = "correct horse battery"


def _gif(path: Path, color: tuple[int, int, int]) -> Path:
    from PIL import Image

    frames = [Image.new("RGB", (64, 48), tuple(min(255, c + 40 * i) for c in color)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=120, loop=0)
    return path


def _page(chromium: Any, base: str) -> tuple[Any, Any, list[str]]:
    context = chromium.new_context(base_url=base, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
    return context, page, problems


def _sign_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def test_label_three_kinds_in_a_browser_then_export(store: LabelStore, live_server: str, chromium: Any,
                                                    tmp_path: Path) -> None:
    store.add_user("ann", PASSWORD)
    store.create_project("rank", "ranking")
    store.create_project("clips", "pairwise")
    store.create_project("rate", "rating")
    store.add_ranking_item("rank", "Write a review of the film.", ["It was fine.", "A triumph!", "Dull."])
    store.add_pairwise_item("clips", "Which robot walks better?", _gif(tmp_path / "a.gif", (200, 40, 40)),
                            _gif(tmp_path / "b.gif", (40, 40, 200)))
    store.add_rating_item("rate", "How do I sharpen a knife?", "Use a whetstone at a 20 degree angle.")
    context, page, problems = _page(chromium, live_server)
    _sign_in(page, "ann")

    page.goto("/p/rank/next")
    assert page.inner_text(".prompt .text") == "Write a review of the film."
    for key in ("2", "1", "2"):  # ranks for responses 1, 2, 3 (the focus moves down); 1 and 3 tie
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#done")

    page.goto("/p/clips/next")
    page.wait_for_function("Array.from(document.querySelectorAll('img.clip')).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("img.clip").count() == 2
    boxes = [page.locator("img.clip").nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] and abs(boxes[0]["y"] - boxes[1]["y"]) < 2  # side by side
    page.wait_for_timeout(300)
    page.keyboard.press("2")  # B is better
    page.wait_for_selector("#done")

    page.goto("/p/rate/next")
    page.keyboard.press("6")
    page.keyboard.press("h")  # gives harmful advice
    page.keyboard.press("n")  # into the notes
    page.keyboard.type("mentions a blade")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done")
    assert problems == []  # no CSP violation, script error or dialog
    context.close()

    ranking, comparison, rating = collect_records(store)
    assert isinstance(ranking, Ranking) and ranking.labeler == "ann"
    assert ranking.responses == ("A triumph!", "It was fine.", "Dull.") and ranking.ranks == (0, 1, 1)
    assert isinstance(comparison, Comparison) and comparison.chosen.endswith("b.gif") and not comparison.tie
    assert isinstance(rating, Rating) and rating.score == 6 and rating.flags == ("harmful_advice",)
    assert rating.notes == "mentions a blade"
    assert all(r.meta["seconds"] > 0 for r in (ranking, comparison, rating))  # time on task recorded


def test_xss_payloads_never_execute(store: LabelStore, live_server: str, chromium: Any) -> None:
    store.add_user("root", PASSWORD, role="admin")
    for markdown in (False, True):
        sfx = "-md" if markdown else ""
        store.create_project("rank" + sfx, "ranking", markdown=markdown)
        store.create_project("pair" + sfx, "pairwise", markdown=markdown)
        store.create_project("rate" + sfx, "rating", markdown=markdown)
        store.add_ranking_item("rank" + sfx, XSS[0] + "\n" + XSS[6], XSS[:9])
        store.add_pairwise_item("pair" + sfx, XSS[3], text_a=XSS[1], text_b=XSS[5])
        store.add_rating_item("rate" + sfx, XSS[4], XSS[2] + XSS[7])
    context, page, problems = _page(chromium, live_server)
    _sign_in(page, "root")
    urls = [f"/p/{p}{sfx}/next" for sfx in ("", "-md") for p in ("rank", "pair", "rate")]
    urls += ["/admin"] + [f"/admin/p/{p}{sfx}" for sfx in ("", "-md") for p in ("rank", "pair", "rate")]
    injected = ("main script, main img:not(.clip), main svg, main iframe, main object, main embed, "
                "main [onerror], main [onload], main a[href^='javascript' i]")
    for url in urls:
        page.goto(url)
        for link in page.locator("main a").all():  # a link that made it through would run on click
            assert not (link.get_attribute("href") or "").lower().strip().startswith("javascript")
        page.wait_for_timeout(100)
        assert page.evaluate("window.__xss") is None, url
        assert page.eval_on_selector_all(injected, "els => els.length") == 0, url
        if url != "/admin":
            assert "window.__xss=1" in page.inner_text("main"), url  # shown as text
    assert problems == []
    context.close()
