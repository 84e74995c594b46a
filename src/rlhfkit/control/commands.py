"""The `rlhfkit control train` command, named by path: `rlhfkit --help` lists it without
importing torch or gymnasium; `control/train.py` holds its code, `control/loop.py` its config."""

from __future__ import annotations

from rlhfkit.command import Command, Flag
from rlhfkit.control import QUERY_KINDS

COMMANDS: list[Command] = [
    Command(
        name="control train",
        help="Deep RL from human preferences (Christiano et al. 2017) on a Gymnasium task",
        run="rlhfkit.control.train:run_train",
        config="rlhfkit.control.loop:ControlConfig",
        flags=(
            Flag("--env", "env", "Gymnasium environment id, e.g. CartPole-v1, Pendulum-v1"),
            Flag("--comparisons", "comparisons", "total comparisons to ask for", type=int),
            Flag("--query", "query", "which pairs to ask about", choices=QUERY_KINDS),
            Flag("--labeler", "labeler", "who answers", choices=("synthetic", "web")),
            Flag("--timesteps", "timesteps", "agent env steps (0: algorithm default)", type=int),
        ),
    ),
]
