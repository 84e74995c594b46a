"""The `rlhfkit offline ...` commands, named by path so `rlhfkit --help` imports neither torch
nor gymnasium: `offline/collect.py` holds the dataset commands, `offline/train.py` the training
and evaluation ones (their config: `offline/method.py`)."""

from __future__ import annotations

from rlhfkit.command import Command, Flag

_TRAIN_FLAGS = (
    Flag("--data", "data", "dataset folder written by `rlhfkit offline collect`"),
    Flag("--mixture", "mixture", "random, medium, medium-replay, medium-expert or expert"),
    Flag("--method", "method", "dt, cdt, bc, pct-bc, bc-safe, hf-dt",
         choices=("dt", "cdt", "bc", "pct-bc", "bc-safe", "hf-dt")),
    Flag("--steps", "steps", "gradient steps", type=int),
)

COMMANDS: list[Command] = [
    Command(
        name="offline collect",
        help="Train a behaviour policy and collect D4RL-style mixtures (random, medium, medium-replay, "
             "medium-expert, expert) with per-step costs",
        run="rlhfkit.offline.collect:run_collect",
        config="rlhfkit.offline.collect:CollectConfig",
        flags=(
            Flag("--env", "env", "Gymnasium id, e.g. Hopper-v5, CartPole-v1, Pendulum-v1"),
            Flag("--steps", "steps", "behaviour policy's training env steps (0: the env's default)", type=int),
            Flag("--transitions", "transitions", "transitions per collected mixture (0: the env's default)",
                 type=int),
        ),
    ),
    Command(
        name="offline export-minari",
        help="Write a collected dataset's mixtures as Minari datasets (--out: the Minari datasets root)",
        run="rlhfkit.offline.collect:run_export_minari",
        config="rlhfkit.offline.collect:ExportConfig",
        flags=(
            Flag("--data", "data", "dataset folder written by `rlhfkit offline collect`"),
            Flag("--mixture", "mixture", "mixture to export, or all"),
            Flag("--overwrite", "overwrite", "replace Minari datasets that already exist", action="store_true"),
        ),
    ),
    Command(
        name="offline train-dt",
        help="Train a Decision Transformer (or, with --method, a baseline: bc, pct-bc, bc-safe, hf-dt) "
             "on a collected mixture and evaluate it at five target returns",
        run="rlhfkit.offline.train:run_train",
        config="rlhfkit.offline.method:OfflineConfig",
        flags=_TRAIN_FLAGS,
    ),
    Command(
        name="offline train-cdt",
        help="Train a Constrained Decision Transformer on a collected mixture and evaluate it at three "
             "cost thresholds (normalized reward and cost)",
        run="rlhfkit.offline.train:run_train",
        config="rlhfkit.offline.method:CDTConfig",
        flags=_TRAIN_FLAGS,
    ),
    Command(
        name="offline eval",
        help="Evaluate a trained offline run again (--out RUN) at other targets, thresholds or episode counts",
        run="rlhfkit.offline.train:run_eval",
        config="rlhfkit.offline.method:OfflineConfig",
        flags=(
            Flag("--episodes", "eval_episodes", "episodes per evaluation point", type=int),
        ),
    ),
]
