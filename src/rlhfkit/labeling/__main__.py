"""`python -m rlhfkit.labeling serve|import|export|users ...`: the `rlhfkit label` commands
alone, without importing the training commands (a server that starts in about a second). The
parser is built from this wing's own declarations (`labeling/commands.py`) by `rlhfkit.command`,
as `rlhfkit` builds its own from every wing's; the CLI module is not imported."""

from __future__ import annotations

import sys

from rlhfkit.command import build_parser
from rlhfkit.errors import UserError
from rlhfkit.labeling.commands import COMMANDS
from rlhfkit.logging import get_logger


def main(argv: list[str] | None = None) -> int:
    ns = build_parser(COMMANDS).parse_args(["label", *(sys.argv[1:] if argv is None else argv)])
    try:
        ns._command.run(ns)
    except UserError as e:
        get_logger().error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
