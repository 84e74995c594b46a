"""Command declarations, on the floor: each wing lists its commands as `COMMANDS: list[Command]`
in its `commands.py`, importing only this module; `cli.py` reads every wing's list. A command
names its run function and config class directly or as a "module:name" path, imported only when
the command runs or shows its help, so building the parser imports neither torch nor the wings'
code. `build_parser` turns declarations into an argparse parser: a config-driven command gets
the common flags `--config FILE.yaml`, `--set a.b=value` (repeatable), `--seed`, `--out DIR`,
`--log {tensorboard,wandb}` and `--resume`, plus its own flags, each mapped onto one config field.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one config field (`dest` is a dotted path)."""

    name: str
    dest: str
    help: str
    type: Callable[[str], Any] | None = str
    positional: bool = False
    action: str | None = None
    choices: tuple[str, ...] | None = None
    nargs: str | None = None


@dataclass(frozen=True)
class Command:
    """`name` may hold a space for grouped commands (`label serve`)."""

    name: str
    help: str
    run: Callable[[Any], Any] | str  # the function, or its "module:function" path (imported to run)
    # a RunConfig dataclass, or its "module:Class" path (imported only when the command runs or
    # shows its help, so `rlhfkit --help` does not import torch); None: `run` gets the Namespace
    config: type | str | None = None
    flags: tuple[Flag, ...] = field(default_factory=tuple)
    common: bool = True  # add --config/--set/--seed/--out/--log/--resume

    def config_class(self) -> type | None:
        return _resolve(self.config) if isinstance(self.config, str) else self.config

    def runner(self) -> Callable[[Any], Any]:
        return _resolve(self.run) if isinstance(self.run, str) else self.run


def _resolve(path: str) -> Any:
    """The object a "module:name" path names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: its config fields are listed under its help, read when asked for."""

    command: Command | None = None

    def format_help(self) -> str:
        if self.command is not None and self.command.config is not None and self.epilog is None:
            self.epilog = _config_epilog(self.command.config_class())
        return super().format_help()


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _config_epilog(cls: type) -> str:
    from rlhfkit.config import field_docs

    lines = ["config fields (set with --set name=value or in --config FILE.yaml):"]
    for name, (default, doc) in field_docs(cls).items():
        lines.append(f"  {name} = {default!r}: {doc}")
    return "\n".join(lines)


def build_parser(commands: list[Command]) -> argparse.ArgumentParser:
    """The `rlhfkit` parser for `commands`: one subcommand each (a grouped name nests)."""
    parser = argparse.ArgumentParser(prog="rlhfkit", description="Learning from human feedback, end to end.")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    top.required = True
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd in commands:
        parts = cmd.name.split(" ")
        sub = top
        for depth, part in enumerate(parts[:-1]):
            key = " ".join(parts[: depth + 1])
            if key not in groups:
                gp = sub.add_parser(part, help=f"{part} commands")
                groups[key] = gp.add_subparsers(dest=f"_group_{depth}", metavar="SUBCOMMAND",
                                                parser_class=_CommandParser)
                groups[key].required = True
            sub = groups[key]
        p = sub.add_parser(parts[-1], help=cmd.help, description=cmd.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.command = cmd
        for fl in cmd.flags:
            kwargs: dict[str, Any] = {"help": fl.help}
            if fl.action:
                kwargs["action"] = fl.action
            if fl.type is not None and fl.action not in ("store_true", "store_false", "store_const", "count"):
                kwargs["type"] = fl.type
            if fl.choices:
                kwargs["choices"] = fl.choices
            if fl.nargs:
                kwargs["nargs"] = fl.nargs
            if fl.positional:
                p.add_argument(fl.name, **kwargs)
            else:
                if fl.action in (None, "append"):
                    kwargs["metavar"] = fl.name.lstrip("-").upper().replace("-", "_")
                kwargs["dest"] = "flag__" + fl.dest.replace(".", "__")
                kwargs["default"] = None
                p.add_argument(fl.name, **kwargs)
        if cmd.common and cmd.config is not None:
            p.add_argument("--config", dest="_config_file", help="YAML config file")
            p.add_argument("--set", dest="_overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override a config field, e.g. --set train.lr=1e-4 (repeatable)")
            p.add_argument("--seed", dest="flag__seed", type=int, default=None, help="random seed")
            p.add_argument("--out", dest="flag__out", default=None, help="run directory to write")
            p.add_argument("--log", dest="flag__log", action="append", default=None,
                           choices=["tensorboard", "wandb"], help="extra metrics sink (repeatable)")
            p.add_argument("--resume", dest="flag__resume", action="store_const", const=True, default=None,
                           help="resume from the last checkpoint in --out")
        p.set_defaults(_command=cmd)
    return parser


def config_from_args(cmd: Command, ns: argparse.Namespace) -> Any:
    from rlhfkit.config import resolve

    extra: dict[str, Any] = {}
    for fl in cmd.flags:
        key = fl.name if fl.positional else "flag__" + fl.dest.replace(".", "__")
        value = getattr(ns, key, None)
        if value is not None:
            _set_path(extra, fl.dest, value)
    for name in ("seed", "out", "log", "resume"):
        value = getattr(ns, "flag__" + name, None)
        if value is not None:
            extra[name] = value
    return resolve(cmd.config_class(), getattr(ns, "_config_file", None), getattr(ns, "_overrides", []), extra)
