"""`rlhfkit <command>`: parse arguments into a config, call one function. No logic here.

Each wing declares its commands (`COMMANDS: list[Command]`, `rlhfkit.command`) in its
`commands.py`; that module's path goes in `COMMAND_MODULES`, read here. The wings import only
`rlhfkit.command`, never this module.
"""

from __future__ import annotations

import importlib
import sys

from rlhfkit.command import Command, build_parser, config_from_args

COMMAND_MODULES: list[str] = [
    "rlhfkit.commands",
    "rlhfkit.labeling.commands",
    "rlhfkit.imitation.commands",
    "rlhfkit.control.commands",
    "rlhfkit.offline.commands",
    "rlhfkit.aggregation.commands",
    "rlhfkit.commands_plan",
]


def _all_commands() -> list[Command]:
    out: list[Command] = []
    for mod in COMMAND_MODULES:
        try:
            out.extend(importlib.import_module(mod).COMMANDS)
        except ModuleNotFoundError as e:  # an optional extra is not installed: its commands are absent
            if not (e.name or "").split(".")[0] in OPTIONAL_PACKAGES:
                raise
    return out


# Packages of the optional extras (label, control, data, lora, log): commands needing them are
# listed only when they are installed, e.g. `pip install -e ".[control]"`.
OPTIONAL_PACKAGES = {"fastapi", "sqlalchemy", "alembic", "jinja2", "uvicorn", "argon2", "itsdangerous",
                     "multipart", "markdown_it", "gymnasium", "stable_baselines3", "imageio", "datasets",
                     "pyarrow", "peft", "tensorboard", "psycopg", "scipy"}


def _quiet_transformers() -> None:
    """No transformers progress bars (weights loading) in our logs. HF_HUB_DISABLE_PROGRESS_BARS
    covers a transformers imported later; this covers one the command's module imported."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    from rlhfkit.errors import UserError
    from rlhfkit.logging import get_logger

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a model hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ns = build_parser(_all_commands()).parse_args(argv)
    cmd: Command = ns._command
    try:
        if cmd.config is None:
            run = cmd.runner()
            _quiet_transformers()
            run(ns)
        else:
            cfg, run = config_from_args(cmd, ns), cmd.runner()  # import the command's modules
            _quiet_transformers()
            run(cfg)
    except UserError as e:
        get_logger().error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

