"""GRPO on a user's task with a verifiable reward, from the command line; determinism (resume
after SIGKILL and 2-process DDP: tests/scale); RLOO's command; the Task protocol and reward parts."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.errors import UserError

USER_TASK = '''
from rlhfkit.tasks.reviews import ReviewTask

class Praise:
    """Review prompts; a response is right when it tells of a purchase, "bought" (a verifier, not
    a model; the tiny model says it in about one response in five)."""
    name = "praise"
    gold = None

    def prompts(self, n, split="train"):
        return ReviewTask(7).prompts(n, "eval" if split == "eval" else "rl")

task = Praise()

def says_bought(prompts, responses):
    return [1.0 if "bought" in r.lower() else 0.0 for r in responses]

def length_penalty(prompts, responses):
    return [-len(r.split()) / 10 for r in responses]
'''


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_praise.py").write_text(textwrap.dedent(USER_TASK))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_praise"


def _satisfied(policy_dir, module: str, n: int = 96, seed: int = 0) -> float:
    import importlib

    from rlhfkit.lm.models import load_policy
    from rlhfkit.lm.sampling import generate
    from rlhfkit.runtime import seed_everything

    mod = importlib.import_module(module)
    seed_everything(seed)
    model, tok = load_policy(policy_dir)
    prompts = mod.task.prompts(n, "eval")
    with torch.no_grad():
        out = generate(model.eval(), tok, prompts, max_new_tokens=16)
    return sum(mod.says_bought(prompts, out.responses)) / n


def _grpo(tiny_lm, out, module, *extra) -> dict:
    args = ["grpo", "--policy", str(tiny_lm), "--task", f"{module}:task", "--reward", f"fn:{module}:says_bought",
            "--out", str(out), "--set", "rollout.batch_prompts=8", "--set", "rollout.max_new_tokens=16",
            "--set", "lr=2e-3", "--set", "checkpoint_every=0", *extra]
    assert main(args) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_grpo_raises_the_verified_fraction_on_held_out_prompts(tiny_lm, tmp_path, user_module):
    before = _satisfied(tiny_lm, user_module)
    _grpo(tiny_lm, tmp_path / "grpo", user_module, "--iterations", "14")
    after = _satisfied(tmp_path / "grpo" / "final", user_module)
    assert after > before + 0.4, (before, after)  # measured (seeds 0, 1, 2): 0.16 / 0.11 / 0.20 -> 1.00


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
def test_each_loss_type_runs_and_is_deterministic(tiny_lm, tmp_path, user_module, loss_type):
    from rlhfkit.logging import read_metrics

    extra = ["--iterations", "2", "--loss-type", loss_type, "--set", "epochs=2", "--set", "minibatch=16",
             "--beta", "0.05", "--set", "mask_truncated=true"]
    _grpo(tiny_lm, tmp_path / "a", user_module, *extra)
    _grpo(tiny_lm, tmp_path / "b", user_module, *extra)
    a, b = (read_metrics(tmp_path / x / "metrics.jsonl") for x in "ab")
    assert [r["grpo/loss"] for r in a] == [r["grpo/loss"] for r in b]
    assert all("grpo/kl" in r and "rollout/kl" in r for r in a)  # beta > 0: the KL term in the loss, logged


def test_weighted_reward_parts_are_logged(tiny_lm, tmp_path, user_module):
    from rlhfkit.logging import read_metrics

    out = tmp_path / "two"
    assert main(["rloo", "--policy", str(tiny_lm), "--task", f"{user_module}:task", "--out", str(out),
                 "--reward", f"fn:{user_module}:says_bought@1", "--reward", f"fn:{user_module}:length_penalty@0.5",
                 "--iterations", "1", "--set", "rollout.batch_prompts=4", "--set", "rollout.max_new_tokens=8"]) == 0
    row = read_metrics(out / "metrics.jsonl")[-1]
    assert {"rollout/reward_part/says_bought", "rollout/reward_part/length_penalty", "rloo/loss"} <= set(row)


def test_reward_specs_and_errors(user_module):
    from rlhfkit.train.rewards import Rewards, parse_reward, reward_specs

    assert parse_reward("fn:a.b:c@0.5").weight == 0.5 and parse_reward("rm:runs/rm/final").kind == "rm"
    assert [p.kind for p in reward_specs(["fn:x:y"], "runs/rm")] == ["rm", "fn"]
    for bad in ("model:x", "fn:nomodule", "fn:a:b@heavy", "rm:"):
        with pytest.raises(UserError):
            parse_reward(bad)
    r = Rewards([parse_reward(f"fn:{user_module}:says_bought@2"), parse_reward(f"fn:{user_module}:length_penalty")])
    total, parts = r.scored(["p", "p"], ["I bought it", "meh"])
    torch.testing.assert_close(total, torch.tensor([2.0 * 1 - 0.3, 2.0 * 0 - 0.1]))  # 3 words, 1 word
    assert set(parts) == {"says_bought", "length_penalty"}
    with pytest.raises(UserError, match="cannot load"):
        Rewards([parse_reward(f"fn:{user_module}:missing")])
    wrong = Rewards([parse_reward(f"fn:{user_module}:length_penalty")])
    wrong.scorers[0] = lambda p, r: [1.0]  # one number for two responses
    with pytest.raises(UserError, match="one number per response"):
        wrong(["a", "b"], ["x", "y"])
    wrong.scorers[0] = lambda p, r: [float("nan"), 0.0]
    with pytest.raises(UserError, match="non-finite"):
        wrong(["a", "b"], ["x", "y"])


def test_load_task(tmp_path, user_module):
    from rlhfkit.tasks.base import gold_of, load_task

    reviews = load_task("reviews")
    assert reviews.name == "reviews" and gold_of(reviews) is not None
    mine = load_task(f"{user_module}:task")
    assert mine.name == "praise" and gold_of(mine) is None and len(mine.prompts(3, "rl")) == 3
    f = tmp_path / "prompts.txt"
    f.write_text("Say hi:\nSay bye:\n")
    t = load_task(str(f))
    assert t.prompts(3) == ["Say hi:", "Say bye:", "Say hi:"] and gold_of(t) is None
    for bad in ("nomodule_xyz:task", f"{user_module}:nothing", "justaword", str(tmp_path / "absent.txt")):
        with pytest.raises(UserError):
            load_task(bad)
    assert load_task(f"{user_module}:Praise").name == "praise"  # a factory (the class) makes one
    with pytest.raises(UserError, match="not a task"):
        load_task(f"{user_module}:says_bought")
