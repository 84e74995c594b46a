"""The `rlhfkit imitate bc|dagger|maxent-irl|feature-matching` commands, named by path:
`rlhfkit --help` lists them without importing torch; `imitation/commands_bc.py` (Gymnasium)
and `imitation/commands_irl.py` (tabular gridworlds) hold their configs and code."""

from __future__ import annotations

from rlhfkit.command import Command, Flag

_BC = "rlhfkit.imitation.commands_bc"
_IRL = "rlhfkit.imitation.commands_irl"
_COMMON = (
    Flag("--env", "env", "Gymnasium environment id, e.g. CartPole-v1"),
    Flag("--expert", "expert", "ppo (SB3, cached) or linear (scripted CartPole)", choices=("ppo", "linear")),
)

_TABULAR = (
    Flag("--env", "env", "gridworld-NxN or penguin"),
    Flag("--demos", "demos", "expert demonstrations (trajectories)", type=int),
    Flag("--features", "features", "reward features of a gridworld", type=int),
)

COMMANDS: list[Command] = [
    Command("imitate bc", "behaviour cloning from an expert's demonstrations", f"{_BC}:run_bc",
            f"{_BC}:ImitateBCConfig",
            flags=_COMMON + (Flag("--demos", "demos", "expert transitions to clone", type=int),)),
    Command("imitate dagger", "DAgger: the expert labels the states the learner visits", f"{_BC}:run_dagger",
            f"{_BC}:ImitateDAggerConfig",
            flags=_COMMON + (Flag("--demos", "demos", "budget of expert-labelled transitions", type=int),
                             Flag("--rounds", "dagger.rounds", "DAgger rounds", type=int))),
    Command("imitate maxent-irl", "MaxEnt inverse RL (Ziebart 2008) on a gridworld with known dynamics",
            f"{_IRL}:run_maxent", f"{_IRL}:TabularIRLConfig", _TABULAR),
    Command("imitate feature-matching", "apprenticeship learning by feature matching (Abbeel & Ng 2004)",
            f"{_IRL}:run_feature_matching", f"{_IRL}:TabularIRLConfig", _TABULAR),
]
