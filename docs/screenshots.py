"""Screenshots of the labeling app's pages for docs/labeling.md, taken in headless Chromium.

    python docs/screenshots.py            # writes docs/img/label_{ranking,pairwise,rating,admin}.png,
                                          # label_{instructions,demonstration,admin_demos}.png
                                          # label_{form,admin_form}.png, label_admin_screening.png
                                          # and label_thumbs.png
    python docs/screenshots.py /tmp/shots # the same, into another folder

Needs Debian's chromium (or $RLHFKIT_CHROMIUM) and the playwright package. The server runs
on loopback in this process, on a throwaway database.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "img"
PASSWORD = "screenshots only"
INSTRUCTIONS = """# Writing demonstrations

Write the reply **a careful, friendly assistant** would give. In order of importance:

1. *Helpful*: answer what was asked; ask for clarification when the request is ambiguous.
2. *Truthful*: do not make things up; say so when you are not sure.
3. *Harmless*: decline requests that would hurt someone, and say why.

Keep it under 200 words unless the task needs more. See the [style guide](https://example.org/style).
"""


def _clip(path: Path, x0: int, dx: int, color: tuple[int, int, int]) -> Path:
    """A small GIF of a ball rolling along the floor (a stand-in for a control-task clip)."""
    from PIL import Image, ImageDraw

    frames = []
    for t in range(12):
        im = Image.new("RGB", (320, 200), (235, 238, 243))
        d = ImageDraw.Draw(im)
        d.rectangle([0, 160, 320, 200], fill=(120, 130, 140))
        x = x0 + dx * t
        d.ellipse([x, 120, x + 40, 160], fill=color)
        frames.append(im)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=90, loop=0)
    return path


def _fill(store, tmp: Path) -> None:
    store.add_user("maria", PASSWORD, role="admin")
    for name in ("ann", "bob"):
        store.add_user(name, PASSWORD)
    store.create_project("reviews-rank", "ranking", labels_per_item=3)
    store.create_project("hopper-clips", "pairwise", labels_per_item=3)
    store.create_project("assistant-rate", "rating")
    store.add_ranking_item("reviews-rank", "Write a short review of a quiet seaside hotel.", [
        "The rooms were clean and the staff kind; breakfast on the terrace made every morning.",
        "Hotel good. Sea good. <b>Would</b> come again!!!",
        "I did not like the hotel. The hotel was a hotel.",
        "Calm, tidy and close to the beach, though the walls are thin and the wifi drops at night.",
    ])
    store.add_pairwise_item("hopper-clips", "Which clip shows the agent moving right faster?",
                            _clip(tmp / "seg_0041.gif", 10, 22, (200, 70, 60)),
                            _clip(tmp / "seg_0187.gif", 40, 9, (60, 90, 200)))
    store.add_rating_item("assistant-rate", "How can I get my toddler to sleep through the night?",
                          "Keep a consistent bedtime routine: bath, a short story, lights out at the same time. "
                          "If they wake, comfort them briefly and calmly without turning the lights on. "
                          "Most children settle within two weeks; ask your pediatrician if it persists.")
    store.create_project("assistant-demos", "demonstration", labels_per_item=2, min_chars=80,
                         instructions=INSTRUCTIONS)
    store.add_demonstration_item("assistant-demos", "My landlord hasn't returned my deposit after 45 days. "
                                 "What can I do?", context="The user lives in California.")
    store.add_demonstration_item("assistant-demos", "Write a two-line poem about autumn for a birthday card.")
    from rlhfkit.labeling.forms import REALTOXICITY

    store.create_project("toxicity", "rating", labels_per_item=3, form=REALTOXICITY)
    for prompt, continuation in TOXICITY_ITEMS:
        store.add_rating_item("toxicity", prompt, continuation)


TOXICITY_ITEMS = [  # RealToxicityPrompts-style prompt and continuation
    ("So I told him to get lost, and he", "laughed it off and bought the next round anyway."),
    ("The referee's decision was so bad that the fans", "booed for ten minutes and called him an idiot."),
]
# answers (input, output, relative, continuity) per item of the two other labelers
TOXICITY_ANSWERS = {"ann": [(1, 0, -1, 3), (1, 1, 0, 3)], "bob": [(1, 0, -1, 2), (0, 2, 1, 3)]}


SCREEN_TOPICS = ["Medical advice", "Violence and self-harm", "Politics and elections", "Sexual content"]
# per candidate: flags set on the two gold flag items, ranks of the gold ranking, demonstration rating, comfort
SCREEN_CANDIDATES = {
    "ann": ([["violent_content"], []], [0, 1, 2], 6, [4, 4, 3, 4]),
    "bob": ([[], ["harmful_advice"]], [2, 1, 0], 3, [5, 2, 2, 1]),
    "cho": ([["violent_content", "harmful_advice"], []], [0, 2, 1], 5, [3, 4, 4, 3]),
}


def _screening(store) -> None:
    """A screening (gold flags, a gold ranking, a demonstration test, a self-assessment) that
    assistant-rate requires, taken by three candidates; maria rates their demonstrations."""
    from rlhfkit.labeling.screening import Thresholds, admit_passing

    store.create_project("screen-flags", "rating", gold_every=0)
    store.create_project("screen-rank", "ranking", gold_every=0)
    store.create_project("screen-demos", "demonstration", min_chars=20, labels_per_item=10)
    store.add_rating_item("screen-flags", "How do I get back at my neighbour?", "Slash his tyres at night.",
                          gold={"score": 1, "flags": ["violent_content"]})
    store.add_rating_item("screen-flags", "Suggest a name for a cat.", "Biscuit.", gold={"score": 6, "flags": []})
    store.add_ranking_item("screen-rank", "Explain what a leap year is.", [
        "A year with 366 days, adding 29 February, to keep the calendar in step with the seasons.",
        "A year that is longer.", "Leap years are when frogs are celebrated."], gold={"ranks": [0, 1, 2]})
    store.add_demonstration_item("screen-demos", "Tell a worried parent how to treat a mild fever.")
    store.create_screening("assistant-screen", flags="screen-flags", ranking="screen-rank",
                           demonstration="screen-demos", topics=SCREEN_TOPICS)
    store.require_screening("assistant-rate", "assistant-screen")
    maria = store.user("maria")
    for name, (flags, ranks, rating, comfort) in SCREEN_CANDIDATES.items():
        user = store.user(name) if name != "cho" else store.add_user(name, token=True)[0]
        for n, f in enumerate(flags):
            item = store.next_item("screen-flags", user)
            store.submit(user, item.id, f"shots-{name}-flag{n}", {"score": 4, "flags": f}, seconds_active=6.0)
        item = store.next_item("screen-rank", user)
        store.submit(user, item.id, f"shots-{name}-screenrank", {"ranks": ranks}, seconds_active=9.0)
        item = store.next_item("screen-demos", user)
        answer = store.submit(user, item.id, f"shots-{name}-screendemo", {"text": "Offer fluids and rest; "
                              "call a doctor if it lasts over three days."}, seconds_active=40.0)
        store.rate_demonstration(maria, answer.answer_id, rating)
        store.save_self_assessment("assistant-screen", user, dict(zip(SCREEN_TOPICS, comfort)))
    store.set_thresholds("assistant-rate", Thresholds(flags=0.85, ranking=0.6, demonstration=4.5, self_assessment=3))
    admit_passing(store, "assistant-rate", maria)


def _thumbs(store) -> None:
    """A thumbs project (binary feedback for KTO): one response per item."""
    from rlhfkit.labeling.kinds import NewItem

    store.create_project("assistant-thumbs", "thumbs", labels_per_item=3)
    store.add_items("assistant-thumbs", [NewItem(
        [{"role": "user", "content": "My sourdough comes out flat. What am I doing wrong?"}],
        ("A flat loaf usually means the starter was past its peak or the dough over-proofed. Feed the "
         "starter 4-6 hours before mixing, use it when it has doubled, and shorten the bulk rise in a warm "
         "kitchen. A few folds in the first two hours also give the dough more strength.",))])


def main() -> int:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from rlhfkit.labeling.app import create_app
    from rlhfkit.labeling.store import LabelStore

    chromium = os.environ.get("RLHFKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    tmp = Path(tempfile.mkdtemp(prefix="label_shots_"))
    store = LabelStore.open(str(tmp / "labels.db"))
    _fill(store, tmp)
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(base_url=base, viewport={"width": 1180, "height": 860}).new_page()
        page.goto("/login")
        page.fill("input[name=username]", "maria")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")

        page.goto("/p/reviews-rank/next")
        for key in ("1", "3", "4", "2", "k"):  # ranks 1, 3, 4 set with the keyboard; focus back on #4
            page.keyboard.press(key)
        page.screenshot(path=str(OUT / "label_ranking.png"), full_page=True)

        page.goto("/p/hopper-clips/next")
        page.wait_for_function("Array.from(document.querySelectorAll('img.clip')).every(i => i.naturalWidth > 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(OUT / "label_pairwise.png"), full_page=True)

        page.goto("/p/assistant-rate/next")
        for key in ("6", "m"):
            page.keyboard.press(key)
        page.keyboard.press("n")
        page.keyboard.type("Sound advice; the last sentence is a little preachy.")
        page.keyboard.press("Escape")
        page.screenshot(path=str(OUT / "label_rating.png"), full_page=True)
        page.keyboard.press("Enter")
        page.wait_for_selector("#done")

        for name, ranks, choice in (("ann", [0, 2, 3, 1], "A"), ("bob", [1, 2, 3, 0], "A")):
            user = store.user(name)  # two more labelers answer, so the admin page has figures
            item = store.next_item("reviews-rank", user)
            store.submit(user, item.id, f"shots-{name}-rank", {"ranks": ranks}, seconds_active=4.0)
            item = store.next_item("hopper-clips", user)
            store.submit(user, item.id, f"shots-{name}-clip", {"choice": choice}, seconds_active=3.0)
        page.goto("/admin")
        page.screenshot(path=str(OUT / "label_admin.png"), full_page=True)

        page.goto("/p/assistant-demos/next")  # the instructions come before the first task
        page.click("#start")
        page.wait_for_url("**/p/assistant-demos/item/*")
        page.keyboard.press("w")
        page.keyboard.type("In California a landlord has 21 days to return a deposit or send an itemized list "
                           "of deductions. Send a written demand letter first; if that fails, you can sue in "
                           "small claims court")
        page.wait_for_timeout(1500)  # the draft autosaves
        page.keyboard.press("Escape")
        page.screenshot(path=str(OUT / "label_demonstration.png"), full_page=True)
        page.keyboard.press("i")
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "label_instructions.png"))
        page.keyboard.press("i")
        page.keyboard.press("w")
        page.keyboard.type(" for up to $12,500.")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#progress:has-text('item 2 of 2')")
        user = store.user("ann")
        item = store.next_item("assistant-demos", user)  # the one maria answered
        answer = store.submit(user, item.id, "shots-ann-demo", {"text": "Ask for it in writing, citing the "
                              "21-day rule (Civil Code 1950.5). If they still refuse, file in small claims court."},
                              seconds_active=3.0)
        store.rate_demonstration(store.user("maria"), answer.answer_id, 5)
        page.goto("/admin/p/assistant-demos")
        page.screenshot(path=str(OUT / "label_admin_demos.png"), full_page=True)

        page.goto("/p/toxicity/next")  # the RealToxicityPrompts form, filled by keyboard
        for key in ("1", "0", "1", "3"):  # input somewhat toxic, output not, less than expected, plausible
            page.keyboard.press(key)
        page.screenshot(path=str(OUT / "label_form.png"), full_page=True)
        page.keyboard.press("Enter")
        page.wait_for_selector("#progress:has-text('item 2 of 2')")
        for key in ("1", "2", "1", "3"):
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_selector("#done")
        for name, answers in TOXICITY_ANSWERS.items():
            user = store.user(name)
            for n, (i, o, r, c) in enumerate(answers):
                item = store.next_item("toxicity", user)
                store.submit(user, item.id, f"shots-{name}-tox{n}", {"input_toxicity": i, "output_toxicity": o,
                             "relative_toxicity": r, "continuity": c}, seconds_active=5.0)
        page.goto("/admin/p/toxicity")
        page.screenshot(path=str(OUT / "label_admin_form.png"), full_page=True)

        _screening(store)
        page.goto("/admin/screening/assistant-rate")
        page.screenshot(path=str(OUT / "label_admin_screening.png"), full_page=True)

        _thumbs(store)  # made last, so that the pages above stay as they were
        page.goto("/p/assistant-thumbs/next")
        page.keyboard.press("u")
        page.screenshot(path=str(OUT / "label_thumbs.png"), full_page=True)
        browser.close()
    server.should_exit = True
    for name in ("ranking", "pairwise", "rating", "admin", "demonstration", "instructions", "admin_demos", "form",
                 "admin_form", "admin_screening", "thumbs"):
        sys.stdout.write(f"wrote {OUT / f'label_{name}.png'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
