"""The `rlhfkit imitate bc|dagger` commands, named by path: `rlhfkit --help` lists them
without importing torch; `imitation/commands_bc.py` holds their configs and code."""

from __future__ import annotations

from rlhfkit.cli import Command, Flag

_IMPL = "rlhfkit.imitation.commands_bc"
_COMMON = (
    Flag("--env", "env", "Gymnasium environment id, e.g. CartPole-v1"),
    Flag("--expert", "expert", "ppo (SB3, cached) or linear (scripted CartPole)", choices=("ppo", "linear")),
)

COMMANDS: list[Command] = [
    Command("imitate bc", "behaviour cloning from an expert's demonstrations", f"{_IMPL}:run_bc",
            f"{_IMPL}:ImitateBCConfig",
            flags=_COMMON + (Flag("--demos", "demos", "expert transitions to clone", type=int),)),
    Command("imitate dagger", "DAgger: the expert labels the states the learner visits", f"{_IMPL}:run_dagger",
            f"{_IMPL}:ImitateDAggerConfig",
            flags=_COMMON + (Flag("--demos", "demos", "budget of expert-labelled transitions", type=int),
                             Flag("--rounds", "dagger.rounds", "DAgger rounds", type=int))),
]
