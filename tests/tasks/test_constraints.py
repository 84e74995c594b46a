"""The instruction-following task (tasks/constraints.py, tasks/constraint_kinds.py): every checker
on hand-written answers, prompts that read back into their constraints, held-out eval requests,
satisfiable prompts, demonstrations at the gold's maximum, and IFEval's metrics by hand."""

from __future__ import annotations

import math
import random
import re

import pytest

from rlhfkit import stats
from rlhfkit.errors import UserError
from rlhfkit.feedback.labelers import words
from rlhfkit.tasks import constraint_kinds as ck
from rlhfkit.tasks import constraints as ct
from rlhfkit.tasks.base import corpus_of, demonstrations_of, gold_of, load_task
from rlhfkit.tasks.constraints import ConstraintsGold, ConstraintsTask, constraints_of

REQUESTS = {r.text for r in ct.all_requests()}

# (constraint, answers that meet it, answers that do not)
CASES = [
    (ck.MinWords(5), ["one two three four five", "P.S. a b c"], ["one two three four", "1 2 3 4 5 6"]),
    (ck.MaxWords(3), ["Hi there friend.", ""], ["Hi there my friend."]),
    (ck.MaxSentences(2), ["One. Two!", "Hello there", "Wait... what?"], ["One. Two. Three?", "* a\n* b\n* c"]),
    (ck.IncludeWords("sun", "tea"), ["Sun and TEA."], ["sunny tea", "the sun"]),
    (ck.IncludeWords("sun"), ["the sun."], ["sunshine"]),
    (ck.ExcludeWord("good"), ["goodness me", "fine"], ["So Good.", "good-bye"]),
    (ck.Bullets(2), ["Intro:\n* a\n- b", "***\n* a\n  * b\nEnd."], ["* a\n* b\n* c", "*a\n*b", "* a", "*\nb\n*\nc"]),
    (ck.Lowercase(), ["all quiet here [name]."], ["All quiet.", "123", ""]),
    (ck.Uppercase(), ["ALL QUIET [NAME]."], ["ALL quiet", "42"]),
    (ck.EndPhrase("See you soon."), ["Bye now. see you soon.  \n"], ["See you soon. Bye.", '"See you soon."']),
    (ck.Quoted(), ['"Hello there."', "  “Hi.”  "], ['Hello "there"', '""', "Hello."]),
    (ck.Title(), ["<<Rain>>\nIt rained.", "Story <<A Day Out>>"], ["<Rain>", "<<  >>", "<<a\nb>>"]),
    (ck.NoCommas(), ["No commas here."], ["Well, yes."]),
    (ck.Json(), ['{"a": 1}', " [1, 2] ", '```json\n{"a": [1, 2]}\n```', "```\n[]\n```"],
     ["42", '"text"', '{"a": 1', 'Here: {"a": 1}', "```json\n{}"]),
    (ck.Paragraphs(2), ["One.\n\nTwo.", "One.\n  \nTwo.\n\n"], ["One.\nTwo.", "One.\n\nTwo.\n\nThree."]),
    (ck.Sections(2), ["One.\n***\nTwo.", "One.\n\n***\n\nTwo. Still two."], ["One.\n\nTwo.", "One. *** Two."]),
    (ck.StartWord("Today"), ['"Today we go."', "*Today* we go", "today."], ["Yesterday today", "Todays news"]),
    (ck.Postscript(), ["Hi.\n\nP.S. Bye.", "hi.\np. s. bye", '"Hi.\nP.S. bye."'], ["Hi. P.S. bye.", "PS bye"]),
    (ck.RepeatRequest("Describe a lake."), ["Describe a lake.\nIt is calm.", " Describe a lake. Calm."],
     ["Describe a lake.", "describe a lake. It is calm.", "Sure. Describe a lake. Calm."]),
    (ck.Highlights(2), ["*One* and *two*", "**bold** and *it*", "* a *b* and *c*"],
     ["* a bullet\n* another", "***\n***", "*one* only", "* a *\n* b *"]),
    (ck.Placeholders(2), ["[name] at [place]", "[A] [B] [C]"], ["[name] only", "[] and []", "[a\nb]"]),
]


def test_every_kind_has_hand_written_cases():
    assert {c.kind for c, _, _ in CASES} == set(ck.KIND_NAMES)
    assert len(ck.KINDS) >= 15 and len(set(ck.KIND_NAMES)) == len(ck.KINDS)


@pytest.mark.parametrize("constraint,good,bad", CASES, ids=[f"{c.kind}{i}" for i, (c, _, _) in enumerate(CASES)])
def test_checker(constraint, good, bad):
    for answer in good:
        assert constraint.check(answer), (constraint, answer)
    for answer in bad:
        assert not constraint.check(answer), (constraint, answer)


def test_every_kind_reads_back_what_it_renders():
    rng = random.Random(0)
    for kind in ck.KINDS:
        for request in ("Describe a lake at sunset.", "Tell me why sleep matters."):
            for _ in range(20):
                c = kind.draw(rng, request)
                text = c.render()
                assert kind.read(text) == (c, len(text))
                assert ck.read_constraint(text, 0) == (c, len(text))
    assert ck.Highlights(1).render().startswith("Highlight at least 1 part of")  # singular for one
    assert ck.IncludeWords("sun", "tea").render() == 'Include the words "sun" and "tea".'


def test_whole_prompts_read_back():
    rng = random.Random(1)
    requests = ct.all_requests()
    for _ in range(2000):
        request = rng.choice(requests).text
        cons = ct.draw_constraints(rng, request)
        assert constraints_of(ct.render_prompt(request, cons)) == cons
    # requests of any wording, ending in . ? or :, and surrounding white space
    assert constraints_of("How are you? Do not use any commas.") == [ck.NoCommas()]
    assert constraints_of("  Tell me a joke:  Use at most 2 sentences.\n") == [ck.MaxSentences(2)]
    assert constraints_of('Say "hi." Use at most 2 sentences.') == [ck.MaxSentences(2)]


def test_a_prompt_not_from_the_task_is_an_error():
    for prompt in ("Write a short review of the kettle:", "Do not use any commas.", "",
                   "Describe a lake. Do not use any commas. And sing."):
        with pytest.raises(UserError, match="not a prompt of the constraints task"):
            constraints_of(prompt)
    with pytest.raises(UserError):
        ct.followed(["Write a short review of the kettle:"], ["Nice."])


def test_requests_and_sentences_are_safe_for_every_constraint():
    requests = ct.all_requests()
    assert len({r.text for r in requests}) == len(requests) >= 300
    banned = set(ck.EXCLUDE_POOL)
    for r in requests:
        assert "," not in r.text and r.text[-1] in ".?" and not any(ch in r.text[:-1] for ch in ".?!:")
    texts = [s for f in ct.FAMILIES for s in (*f.openers, *f.fillers, *f.titles, *f.topics)]
    texts += [*ct.POSTSCRIPTS, *ck.END_PHRASES, *ck.START_WORDS, *ck.INCLUDE_POOL, "It all brings to mind",
              "Fill in name and date and place later"]
    for text in texts:
        assert "," not in text and not banned & set(words(text)), text


def request_of(prompt: str) -> str:
    """The task's request that starts a prompt (a request has one . or ?, at its end)."""
    request = re.match(r"[^.?]*[.?]", prompt).group()
    assert request in REQUESTS
    return request


def test_splits_are_deterministic_and_eval_is_held_out():
    task = ConstraintsTask(0)
    got = {s: task.prompts(1500, s) for s in ("train", "rm", "rl", "eval")}
    assert got["train"] == ConstraintsTask(0).prompts(1500, "train")
    assert got["train"] != ConstraintsTask(1).prompts(1500, "train")
    assert len({tuple(v) for v in got.values()}) == 4
    assert all(ct.is_eval_request(request_of(p)) for p in got["eval"])
    others = got["train"] + got["rm"] + got["rl"]
    assert not any(ct.is_eval_request(request_of(p)) for p in others)
    assert not set(got["eval"]) & set(others)
    assert len(set(got["eval"])) > 1000  # varied: about 60 held-out requests times the constraints
    with pytest.raises(UserError, match="unknown split"):
        task.prompts(3, "test")


def test_no_contradictory_combinations():
    task = ConstraintsTask(2)
    counts = {1: 0, 2: 0, 3: 0}
    for prompt, answer in task.examples(3000, "train") + task.examples(1000, "eval"):
        cons = constraints_of(prompt)
        counts[len(cons)] += 1
        kinds = {c.kind for c in cons}
        assert len(kinds) == len(cons)
        assert not {"lowercase", "uppercase"} <= kinds
        assert "json" not in kinds or kinds <= {"json", "min_words", "max_words", "include_words",
                                                "exclude_word", "placeholders"}
        assert len(kinds & {"bullets", "paragraphs", "sections", "json"}) <= 1
        for i, a in enumerate(cons):
            for b in cons[i + 1:]:
                assert ck.compatible(a, b), (a, b)
        lo = [c.n for c in cons if isinstance(c, ck.MinWords)]
        hi = [c.n for c in cons if isinstance(c, ck.MaxWords)]
        assert not (lo and hi) or hi[0] >= lo[0] + 20
        assert all(ct.checks(prompt, answer))  # every prompt comes with an answer that meets it all
    assert min(counts.values()) > 400


def test_demonstrations_meet_every_constraint_at_the_gold_maximum():
    task = ConstraintsTask(0)
    demos = task.demonstrations(400)
    prompts, responses = [d.prompt for d in demos], [d.response for d in demos]
    assert ct.followed(prompts, responses) == [1.0] * 400
    assert ct.all_followed(prompts, responses) == [1.0] * 400
    gold = task.gold
    assert gold.batch(prompts, responses) == [2.0] * 400  # the maximum: every penalty zero
    assert not any(ct.is_eval_request(request_of(d.prompt)) for d in demos)
    seen = {c.kind for p in prompts for c in constraints_of(p)}
    assert seen == set(ck.KIND_NAMES)
    docs = task.corpus(50)
    assert len(docs) == 50
    assert all(ct.followed(*zip(d.split("\n", 1))) == [1.0] for d in docs)  # prompt, newline, answer


def test_gold_terms_by_hand():
    gold = ConstraintsGold()
    prompt = "Describe a lake at sunset. Do not use any commas. Answer with at most 5 words."
    # empty: both constraints are met (no commas, at most 5 words), the empty term takes it back
    assert gold.parts(prompt, "") == {"followed": 1.0, "repetition": 0.0, "empty": 1.0, "unfinished": 0.0}
    assert gold(prompt, "") == pytest.approx(2.0 - 2.0)
    # 6 words (too many), no comma; bigrams the-lake lake-the x2, 3 of 5 repeated; stops mid-sentence
    p = gold.parts(prompt, "the lake the lake the lake")
    assert p == {"followed": 0.5, "repetition": pytest.approx(0.6), "empty": 0.0, "unfinished": 1.0}
    assert gold(prompt, "the lake the lake the lake") == pytest.approx(2.0 * 0.5 - 0.6 - 0.5)
    assert gold(prompt, "Calm water, gold light.") == pytest.approx(1.0)  # a comma: one of two met
    assert gold(prompt, "Calm gold water.") == pytest.approx(2.0)
    assert gold.batch([prompt, prompt], ["", "Calm gold water."]) == [pytest.approx(0.0), pytest.approx(2.0)]


def test_unfinished_spares_what_constraints_demand():
    for answer in ['"All of it"', '{"a": "b"}', "List:\n* first\n* second item", "<<Title>>", "Fill [name]",
                   "Stop.", "Why?", "*done*", "", "   "]:
        assert not ct.unfinished(answer), answer
    for answer in ["It stops mid", "Here are my tips:", "One. Two and"]:
        assert ct.unfinished(answer), answer
    end = ck.EndPhrase("the end")
    assert not ct.unfinished("Roses bloom. The end", [end])
    assert ct.unfinished("Roses bloom. The end", [])
    prompt = 'Write a poem. End your answer with the exact words "the end" and nothing after them.'
    assert ConstraintsGold().parts(prompt, "Roses bloom. The end")["unfinished"] == 0.0


def test_wilson_interval_by_hand():
    # 3 of 4: p = .75, z^2 = 3.8416, center = (.75 + .4802) / 1.9604 = .627525,
    # half = 1.96 * sqrt(.75 * .25 / 4 + 3.8416 / 64) / 1.9604 = 1.96 * sqrt(.1069) / 1.9604 = .326889
    lo, hi = stats.wilson_interval(3, 4)
    assert lo == pytest.approx(0.300636, abs=1e-5) and hi == pytest.approx(0.954414, abs=1e-5)
    assert stats.wilson_interval(0, 10)[0] == 0.0 and stats.wilson_interval(10, 10)[1] == 1.0
    assert 0.0 < stats.wilson_interval(10, 10)[0] < 1.0  # not degenerate at k = n
    with pytest.raises(ValueError):
        stats.wilson_interval(1, 0)


def test_ratio_interval_by_hand():
    # met/asked: 1/2, 0/1, 2/3, 1/2 -> R = 4/8; residuals 0, -.5, .5, 0; squares sum .5;
    # var = 4/3 * .5 / 64 = .0104167, half = 1.96 * .102062 = .200042
    r, (lo, hi) = stats.ratio_interval([1, 0, 2, 1], [2, 1, 3, 2])
    assert r == 0.5 and lo == pytest.approx(0.299958, abs=1e-5) and hi == pytest.approx(0.700042, abs=1e-5)
    assert stats.ratio_interval([2, 3], [2, 3]) == (1.0, (1.0, 1.0))
    assert stats.ratio_interval([1], [2]) == (0.5, (0.0, 1.0))


def test_ifeval_metrics_on_built_responses():
    prompts = [
        "Describe a lake. Do not use any commas. Write your whole answer in lowercase letters only.",
        "Describe a lake. Use at most 2 sentences.",
        "Describe a lake. Do not use any commas. Answer with at least 3 words. Wrap your whole answer in double "
        "quotes.",
        "Describe a lake. Give your answer a title in double angle brackets, like <<my title>>.",
    ]
    responses = ["a calm, still lake.", "Calm. Still.", '"A calm lake, still and blue."', "<<Lake>>\nCalm."]
    # met: 1 of 2, 1 of 1, 2 of 3, 1 of 1 -> prompts all-met 2 of 4; instructions 5 of 7
    met = [ct.checks(p, r) for p, r in zip(prompts, responses)]
    assert met == [[False, True], [True], [False, True, True], [True]]
    m = ct.ifeval_metrics(prompts, responses)
    assert (m.n_prompts, m.n_instructions) == (4, 7)
    assert m.prompt_acc == 0.5 and m.prompt_ci == stats.wilson_interval(2, 4)
    # R = 5/7; residuals 1 - 10/7, 1 - 5/7, 2 - 15/7, 1 - 5/7 = -3/7, 2/7, -1/7, 2/7; squares 18/49
    var = 4 / 3 * (18 / 49) / 49
    assert m.instr_acc == pytest.approx(5 / 7)
    assert m.instr_ci == pytest.approx((5 / 7 - 1.96 * math.sqrt(var), 5 / 7 + 1.96 * math.sqrt(var)))


def test_paired_delta_by_hand():
    # d = 0, 0, 1, 0, -1: mean 0, sd sqrt(2/4), half 1.96 * .707107 / sqrt(5) = .619806
    d, lo, hi = stats.paired_delta([1, 1, 0, 0, 1], [1, 1, 1, 0, 0])
    assert d == 0.0 and lo == pytest.approx(-0.619806, abs=1e-5) and hi == pytest.approx(0.619806, abs=1e-5)
    # d = 1, 1, 0, 0: mean .5, sd sqrt(1/3), half 1.96 * .57735 / 2 = .565803; clipped at 1
    assert stats.paired_delta([False, False, False, True], [True, True, False, True]) == pytest.approx(
        (0.5, 0.5 - 0.565803, 1.0), abs=1e-5)
    assert stats.paired_delta([True, False], [True, False]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        stats.paired_delta([True], [True, False])


def test_load_task_and_reward_specs():
    from rlhfkit.train.rewards import load_function, parse_reward

    task = load_task("constraints", seed=3)
    assert isinstance(task, ConstraintsTask) and task.seed == 3 and task.name == "constraints"
    assert isinstance(gold_of(task), ConstraintsGold)
    assert len(demonstrations_of(task, 5)) == 5 and len(corpus_of(task, 5)) == 5
    prompts = task.prompts(4, "rl")
    part = parse_reward("fn:rlhfkit.tasks.constraints:followed@0.5")
    assert (part.kind, part.name, part.weight) == ("fn", "followed", 0.5)
    fn = load_function(part.target)
    assert fn(prompts, [""] * 4) == ct.followed(prompts, [""] * 4)
    strict = load_function(parse_reward("fn:rlhfkit.tasks.constraints:all_followed").target)
    prompt = "Describe a lake. Do not use any commas. Use at most 2 sentences."
    assert strict([prompt, prompt], ["Calm, blue.", "Calm blue."]) == [0.0, 1.0]
    assert fn([prompt], ["Calm, blue."]) == [0.5]


def test_the_task_reports_ifeval_metrics_for_rlhfkit_eval():
    task = ConstraintsTask(0)
    prompts, answers = zip(*task.examples(6, "eval"))
    responses = list(answers[:3]) + [""] * 3  # three answers that meet everything, three empty ones
    m = task.metrics(list(prompts), responses)
    assert m["prompt_acc"] == 0.5 and m["prompt_ci"] == list(stats.wilson_interval(3, 6))
    assert 0.0 < m["instr_acc"] <= 1.0 and m["instr_ci"][0] <= m["instr_acc"] <= m["instr_ci"][1]
