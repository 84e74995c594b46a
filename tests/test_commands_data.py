"""`rlhfkit sample` and `rlhfkit label-sim` take the task: sample draws the task's prompts (the
embedded task's "rm" stream by default, as before), label-sim hands the task's gold to the
simulated labelers and refuses a task without one."""

from __future__ import annotations

import json

from rlhfkit.cli import main
from rlhfkit.feedback.formats import write_records
from rlhfkit.feedback.records import Completions
from rlhfkit.tasks.reviews import ReviewTask


class Greetings:
    name = "greetings"

    def prompts(self, n, split="train"):
        return [f"Greet person {i} ({split}):" for i in range(n)]

    @property
    def gold(self):
        return None


class Loud:
    """A gold with `batch` only: more exclamation marks are better."""

    def batch(self, prompts, responses):
        return [float(r.count("!")) for r in responses]


class Shouting(Greetings):
    name = "shouting"

    @property
    def gold(self):
        return Loud()


greetings, shouting = Greetings(), Shouting()


def _prompts(path):
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines()]


def test_sample_draws_the_tasks_prompts(tiny_lm, tmp_path):
    base = ["sample", "--policy", str(tiny_lm), "--n-prompts", "3", "--k", "2", "--set", "max_new_tokens=4"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0  # default: the embedded task's "rm" stream
    assert _prompts(tmp_path / "a" / "samples.jsonl") == ReviewTask(0).prompts(3, "rm")
    assert main([*base, "--task", f"{__name__}:greetings", "--set", "split=eval", "--out", str(tmp_path / "b")]) == 0
    assert _prompts(tmp_path / "b" / "samples.jsonl") == greetings.prompts(3, "eval")


def test_label_sim_hands_the_tasks_gold_to_the_labelers(tmp_path):
    samples = tmp_path / "s.jsonl"
    write_records(samples, [Completions(f"p{i}", ("ok.", "wow!!!")) for i in range(12)])
    out = tmp_path / "lab"
    assert main(["label-sim", "--samples", str(samples), "--task", f"{__name__}:shouting", "--kind", "pairwise",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 12 and summary["gold_agreement_shared"]
    assert main(["label-sim", "--samples", str(samples), "--task", f"{__name__}:greetings",
                 "--out", str(tmp_path / "none")]) == 2  # no gold: a clear error
