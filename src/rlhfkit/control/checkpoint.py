"""Checkpoints of the preference-RL loop, one per finished round, for `--resume`.

`OUT/checkpoints/round-N/` holds everything the loop needs to go on with round N + 1:

- `agent.zip` (stable-baselines3 `save`), plus `replay_buffer.pkl` for off-policy agents;
- `state.pt`: the reward ensemble (member weights, L2 weight, normalization, its sampling
  generator), the labeled comparisons with their train/validation split, the learner's
  recent episodes and counters, the labeler's state (its generator; the web labeler's
  outstanding queries), the episode recorder's seed generator and step count, the curve
  so far, the wall time spent, and the numpy / torch / Python generator states.

Each checkpoint is written to a temporary directory and renamed into place
(`runtime.atomic_dir`), and `state.pt` is written last, so a run killed at any instant
leaves only complete checkpoints. Older ones are pruned.

What is not restored: the episode the agent was in the middle of when the round ended
(SB3 does not save its current observation, so a resumed agent starts a new episode),
and SB3's own episode-info buffers. A resumed run therefore matches an uninterrupted one
in its comparisons, rounds and curve length, not bitwise in its numbers.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger
from rlhfkit.runtime import atomic_dir

log = get_logger(__name__)
STATE_FILE = "state.pt"
# Config fields that may differ between the interrupted run and its resumption.
_FREE_FIELDS = {"resume", "out", "log", "web_timeout", "web_db", "clips_dir"}


def checkpoint_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints"


def latest_round(out: str | Path) -> Path | None:
    """The newest complete round checkpoint under OUT, or None."""
    root = checkpoint_dir(out)
    if not root.exists():
        return None
    done = [p for p in root.glob("round-*") if (p / STATE_FILE).exists() and p.name[6:].isdigit()]
    return max(done, key=lambda p: int(p.name[6:])) if done else None


def clear(out: str | Path) -> None:
    """Remove the checkpoints of an earlier run in OUT (a fresh start must not resume from them)."""
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)


def _config_fields(cfg: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _FREE_FIELDS}


def _ensemble_state(ens: Any) -> dict[str, Any]:
    return {"members": [m.state_dict() for m in ens.members], "l2": ens.l2, "center": ens.center,
            "scale": ens.scale, "rng": ens.rng.bit_generator.state, "last_metrics": ens.last_metrics}


def _load_ensemble(ens: Any, st: dict[str, Any]) -> None:
    for m, sd in zip(ens.members, st["members"], strict=True):
        m.load_state_dict(sd)
    ens.l2, ens.center, ens.scale = st["l2"], st["center"], st["scale"]
    ens.rng.bit_generator.state = st["rng"]
    ens.last_metrics = st["last_metrics"]


def save_round(out: str | Path, round_idx: int, learner: Any, agent: Any, recorder: Any,
               curve: list[dict], elapsed_s: float, keep: int = 2) -> Path:
    """Write `checkpoints/round-{round_idx}/` atomically; prune all but the newest `keep`."""
    target = checkpoint_dir(out) / f"round-{round_idx}"
    labeler_state = learner.labeler.state_dict() if hasattr(learner.labeler, "state_dict") else None
    state = {
        "round": round_idx, "config": _config_fields(learner.cfg), "ensemble": _ensemble_state(learner.ensemble),
        "data": dataclasses.asdict(learner.data), "recent": learner.recent, "asked": learner.asked,
        "can_terminate": learner.can_terminate, "rng": learner.rng.bit_generator.state,
        "labeler": labeler_state, "recorder": {"rng": recorder._rng.bit_generator.state,
                                               "total_steps": recorder.total_steps},
        "curve": curve, "elapsed_s": elapsed_s, "global_rng": {
            "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }
    with atomic_dir(target) as tmp:
        agent.save(str(tmp / "agent.zip"))
        if getattr(agent, "replay_buffer", None) is not None:
            agent.save_replay_buffer(str(tmp / "replay_buffer.pkl"))
        torch.save(state, tmp / STATE_FILE)  # last: its presence marks the checkpoint complete
    older = sorted((p for p in checkpoint_dir(out).glob("round-*") if p != target and p.name[6:].isdigit()),
                   key=lambda p: int(p.name[6:]))
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def load_round(ckpt: Path, learner: Any) -> dict[str, Any]:
    """Restore the learner (ensemble, data, episodes, counters, labeler, generators) from
    `ckpt` in place; returns the rest of the state (round, recorder, curve, elapsed_s).
    The agent is loaded separately by `load_agent`, once its environment exists."""
    state = torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=False)
    now = _config_fields(learner.cfg)
    diff = sorted(k for k in set(now) | set(state["config"]) if now.get(k) != state["config"].get(k))
    if diff:
        shown = ", ".join(f"{k}: {state['config'].get(k)!r} then, {now.get(k)!r} now" for k in diff)
        raise UserError(f"--resume: the run in {Path(ckpt).parent.parent} was started with other settings ({shown}); "
                        "resume with the same settings or use another --out")
    _load_ensemble(learner.ensemble, state["ensemble"])
    for name, value in state["data"].items():
        setattr(learner.data, name, list(value))
    learner.recent, learner.asked = list(state["recent"]), int(state["asked"])
    learner.can_terminate = bool(state["can_terminate"])
    learner.rng.bit_generator.state = state["rng"]
    if state["labeler"] is not None and hasattr(learner.labeler, "load_state_dict"):
        learner.labeler.load_state_dict(state["labeler"])
    g = state["global_rng"]
    random.setstate(g["python"])
    np.random.set_state(g["numpy"])
    torch.set_rng_state(g["torch"])
    log.info("resuming from %s: %d comparisons so far, continuing with round %d",
             ckpt, len(learner.data.mu), state["round"] + 1)
    return state


def load_agent(ckpt: Path, algo: str, env: Any) -> Any:
    """The SB3 agent saved in `ckpt`, attached to `env` (with its replay buffer if it has one)."""
    from stable_baselines3 import A2C, PPO, SAC

    cls = {"ppo": PPO, "sac": SAC, "a2c": A2C}[algo]
    agent = cls.load(str(Path(ckpt) / "agent.zip"), env=env, device="cpu")
    buf = Path(ckpt) / "replay_buffer.pkl"
    if buf.exists():
        agent.load_replay_buffer(str(buf))
    return agent


def restore_recorder(recorder: Any, state: dict[str, Any]) -> None:
    recorder._rng.bit_generator.state = state["recorder"]["rng"]
    recorder.total_steps = int(state["recorder"]["total_steps"])
