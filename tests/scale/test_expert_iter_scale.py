"""Expert iteration at scale (issue 7): a run SIGKILLed during round 2 of 3 and resumed ends with
the weights of an uninterrupted run, bit for bit (CPU); under `accelerate launch` with 2 gloo
processes each process samples half of every round's prompts, the gathered demonstrations are
the single-process run's, both processes end with identical weights and only one writes files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from online_helpers import SEQUENCE, child_env, kill_when, make_reward_dir
from safetensors.torch import load_file

from rlhfkit.feedback.formats import read_records
from rlhfkit.logging import read_metrics
from rlhfkit.train.dist import unshard

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
DRIVER = Path(__file__).with_name("expert_iter_ddp_driver.py")


@pytest.fixture(scope="module")
def reward_dir(micro_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reward_dir(micro_lm, tmp_path_factory.mktemp("micro_rm"))


def _argv(lm: Path, rm: Path, out: Path, prompts: int = 8, epochs: float = 6.0, rounds: int = 3,
          checkpoint_every: int = 0) -> list[str]:
    return ["expert-iter", "--policy", str(lm), "--reward-model", str(rm), "--out", str(out), "--rounds", str(rounds),
            "--set", f"prompts_per_round={prompts}", "--set", "n=3", "--set", "max_new_tokens=6",
            "--set", "optim.batch_size=4", "--set", f"optim.epochs={epochs}", "--set", "optim.lr=3e-3",
            "--set", f"optim.checkpoint_every={checkpoint_every}", "--set", "device=cpu", "--set", "seed=3"]


def test_unshard_undoes_the_shard():
    items = list(range(7))
    assert unshard([items[0::2], items[1::2]]) == items
    assert unshard([items[0::3], items[1::3], items[2::3]]) == items
    assert unshard([items]) == items


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED", "fsdp-launch"])
def test_weight_sharding_is_refused_with_a_clear_error(kind, monkeypatch):
    """Round 2 of an FSDP run would fail deep in `fit` (the model is already sharded): refuse at start."""
    from accelerate import DistributedType

    from rlhfkit.algos.expert_iteration import _refuse_sharding
    from rlhfkit.errors import UserError

    acc = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU if kind == "fsdp-launch" else DistributedType[kind])
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true" if kind == "fsdp-launch" else "false")
    with pytest.raises(UserError, match="one device or with DDP"):
        _refuse_sharding(acc)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    _refuse_sharding(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))  # DDP: accepted


def _kill_in_round_2(argv: list[str], out: Path, when: Path) -> None:
    """Start the run; SIGKILL it once the file `when` of round 2's fine-tuning exists."""
    kill_when(argv, when, 60, "the run ended before round 2", "round 2 did not start within 60 s")
    assert (out / "checkpoints" / "step-1" / "trainer_state.pt").exists()
    assert not (out / "checkpoints" / "step-2").exists(), "round 2 finished before the kill: nothing was tested"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("in_round_every", [0, 2], ids=["redo-round", "in-round-checkpoint"])
def test_sigkill_in_round_2_then_resume_equals_uninterrupted_run(in_round_every, micro_lm, reward_dir, tmp_path):
    """Killed once round 2's demonstrations are written (it is fine-tuning); or, with in-round
    checkpoints every 2 steps, once round 2's first one is complete (resumed, the round samples
    its demonstrations again and its fine-tuning continues from that checkpoint)."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = lambda out: _argv(micro_lm, reward_dir, out, checkpoint_every=in_round_every)
    when = (killed / "round-1" / "checkpoints" / "step-2" / "trainer_state.pt" if in_round_every
            else killed / "round-1" / "demos.jsonl")
    _kill_in_round_2(args(killed), killed, when)
    ckpt = killed / "checkpoints" / "step-1" / "policy"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "config.json").exists()  # Hugging Face-native
    proc = subprocess.run([sys.executable, "-c", SEQUENCE, " ".join([*args(killed), "--resume"]) + "|" +
                           " ".join(args(whole))], env=child_env(), capture_output=True, text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming from" in proc.stderr and "(round 1)" in proc.stderr
    assert ("expert-iter round 1: resuming from" in proc.stderr) == bool(in_round_every)

    a, b = (load_file(str(run / "final" / "model.safetensors")) for run in (killed, whole))
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    init = load_file(str(micro_lm / "model.safetensors"))
    assert any(not torch.equal(init[n], a[n]) for n in init if n in a), "training did not move the weights"
    for r in range(3):  # the redone round 2 (and round 3) chose the same demonstrations
        assert read_records(killed / f"round-{r}" / "demos.jsonl") == read_records(whole / f"round-{r}" / "demos.jsonl")
    sk, sw = (json.loads((run / "summary.json").read_text()) for run in (killed, whole))
    assert [row["round"] for row in sk["rounds"]] == [0, 1, 2]  # the summary covers the whole run
    assert sk["rounds"] == sw["rounds"]
    rounds_logged = [row["step"] for row in read_metrics(killed / "metrics.jsonl") if "expert_iter/demos" in row]
    assert rounds_logged == [0, 1, 1, 2]  # round 2 was redone, round 1 was not


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.timeout(180)
def test_expert_iteration_and_best_of_n_under_two_process_ddp(micro_lm, reward_dir, tmp_path):
    """7 prompts a round: the processes sample 4 and 3. Sampling is greedy in the driver, so a
    chosen response depends on its prompt and the weights only, and the 2-process run can be
    compared with the single-process one. Two rounds: the second samples from weights that
    match the single process's to float rounding only, so a later round may break a near-tie of
    the untrained model's greedy choice differently (seen in a third round here)."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"

    def args(out: Path) -> list[str]:  # expert iteration, then the best-of-n command on 5 prompts
        return [*_argv(micro_lm, reward_dir, out, prompts=7, epochs=2.0, rounds=2), "--then", "best-of-n",
                "--policy", str(micro_lm), "--reward-model", str(reward_dir), "--out", str(out / "bon"),
                "--n", "2", "--set", "n_prompts=5", "--set", "max_new_tokens=6", "--set", "device=cpu"]

    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
          "--main_process_port", str(_free_port()), str(DRIVER), *args(ddp)])
    _run([sys.executable, str(DRIVER), *args(single)])

    assert [(ddp / f"world-{r}.txt").read_text() for r in (0, 1)] == ["2", "2"]
    p0, p1 = [(ddp / f"prompts-{r}.txt").read_text().splitlines() for r in (0, 1)]
    ps = (single / "prompts-0.txt").read_text().splitlines()
    rounds = [ps[7 * t: 7 * t + 7] for t in range(2)]
    assert len(ps) == 14 and len(p0) == 8 and len(p1) == 6  # each process sampled its half
    assert p0 == [p for b in rounds for p in b[0::2]] and p1 == [p for b in rounds for p in b[1::2]]

    # both processes trained the same weights; only the main process wrote final/ and the files
    w0, w1 = (torch.load(ddp / f"weights-{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    final = load_file(str(ddp / "final" / "model.safetensors"))
    assert all(torch.equal(final[k], w0[k]) for k in final)
    assert sorted(p.name for p in ddp.glob("final*")) == ["final"]
    assert [r["step"] for r in read_metrics(ddp / "metrics.jsonl") if "expert_iter/demos" in r] == [0, 1]

    # the gathered demonstrations are the single-process run's, in its order
    demos_d = [read_records(ddp / f"round-{r}" / "demos.jsonl") for r in range(2)]
    demos_s = [read_records(single / f"round-{r}" / "demos.jsonl") for r in range(2)]
    assert [len(d) for d in demos_d] == [len(d) for d in demos_s] and len(demos_d[0]) > 0
    assert demos_d == demos_s
    sd, ss = (json.loads((run / "summary.json").read_text()) for run in (ddp, single))
    assert (sd["processes"], ss["processes"]) == (2, 1)
    assert sd["rounds"][0]["best_score"] == pytest.approx(ss["rounds"][0]["best_score"], rel=1e-5)
    init = load_file(str(micro_lm / "model.safetensors"))
    single_final = load_file(str(single / "final" / "model.safetensors"))
    assert any(not torch.equal(init[n], single_final[n]) for n in init), "training did not move the weights"
    for name in single_final:  # the same data in the same order: DDP follows the single process
        a, b = final[name], single_final[name]
        if name.endswith("attn.c_attn.bias"):
            # The key bias adds the same number to every score of a query, which softmax ignores:
            # its gradient is zero but for rounding, and Adam scales rounding noise up to a step
            # of size lr, in either process's direction. Query and value biases are compared.
            third = a.shape[0] // 3
            a, b = torch.cat([a[:third], a[2 * third:]]), torch.cat([b[:third], b[2 * third:]])
        # Adam divides by the root of the second moment, so where a gradient is near zero, rounding
        # differences of the all-reduce become steps of up to ~lr (1.1e-5 seen on one Xeon, over
        # weights of mean size 0.02): a loose bound per element, a tight one on the mean.
        assert torch.allclose(a, b, rtol=1e-4, atol=5e-5), name
        assert (a - b).abs().mean() < 1e-6, name

    # the best-of-n command: 3 + 2 prompts sampled, one best.jsonl, the single process's
    assert [len((ddp / "bon" / f"prompts-{r}.txt").read_text().splitlines()) for r in (0, 1)] == [3, 2]
    best_d = read_records(ddp / "bon" / "best.jsonl")
    assert best_d == read_records(single / "bon" / "best.jsonl")
    bd, bs = (json.loads((run / "bon" / "summary.json").read_text()) for run in (ddp, single))
    assert bd["prompts"] == bs["prompts"] == 5 and bd["best_score"] == pytest.approx(bs["best_score"], rel=1e-5)
    assert bd["empty"] == bs["empty"] and len(best_d) == 5 - bd["empty"] > 0  # blank responses left out
