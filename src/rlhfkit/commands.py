"""The language-model pipeline's commands (pretrain, sft, sample, label-sim, rm, ...)."""

from __future__ import annotations

from rlhfkit.cli import Command

COMMANDS: list[Command] = []
