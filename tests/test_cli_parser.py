"""command.py and cli.py: a dummy Command registered through build_parser([...]) maps flags and common options
onto its config; `rlhfkit` reads every wing's commands without importing torch."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

from rlhfkit import cli
from rlhfkit.command import Command, Flag, build_parser, config_from_args
from rlhfkit.config import F, ConfigError, RunConfig
from rlhfkit.errors import UserError


@dataclass
class DataConfig:
    path: str = F("data.jsonl", "records to read")
    limit: int = F(0, "how many records (0: all)")


@dataclass
class DummyConfig(RunConfig):
    lr: float = F(1e-3, "learning rate")
    beta: float = F(0.1, "KL weight")
    fast: bool = F(False, "skip the slow parts")
    kind: str = F("k1", "KL estimator")
    data: DataConfig = F(DataConfig(), "input data")


CALLS: list = []

DUMMY = Command(
    name="dummy",
    help="a command for tests",
    run=CALLS.append,
    config=DummyConfig,
    flags=(
        Flag("data", "data.path", "records file", positional=True),
        Flag("--lr", "lr", "learning rate", type=float),
        Flag("--limit", "data.limit", "record cap", type=int),
        Flag("--fast", "fast", "skip slow parts", action="store_true"),
        Flag("--kind", "kind", "estimator", choices=("k1", "k2", "k3")),
    ),
)
SERVE = Command(name="label serve", help="serve", run=CALLS.append, config=None,
                flags=(Flag("--port", "port", "port", type=int),), common=False)
EXPORT = Command(name="label export", help="export", run=CALLS.append, config=DummyConfig)


def _cfg(argv: list[str]) -> DummyConfig:
    ns = build_parser([DUMMY, SERVE, EXPORT]).parse_args(argv)
    assert ns._command is DUMMY
    return config_from_args(DUMMY, ns)


def test_flags_map_onto_config_fields():
    cfg = _cfg(["dummy", "in.jsonl", "--lr", "0.5", "--limit", "7", "--fast", "--kind", "k3"])
    assert cfg.data.path == "in.jsonl"
    assert cfg.lr == 0.5 and cfg.data.limit == 7 and cfg.fast is True and cfg.kind == "k3"
    assert cfg.beta == 0.1 and cfg.seed == 0


def test_absent_flags_keep_defaults():
    cfg = _cfg(["dummy", "in.jsonl"])
    assert cfg == DummyConfig(data=DataConfig(path="in.jsonl"))


def test_common_options_seed_out_log_resume_set():
    cfg = _cfg(["dummy", "x", "--seed", "3", "--out", "runs/a", "--log", "tensorboard", "--log", "wandb",
                "--resume", "--set", "beta=0.02", "--set", "data.limit=5", "--set", "fast=true"])
    assert (cfg.seed, cfg.out, cfg.log, cfg.resume) == (3, "runs/a", ["tensorboard", "wandb"], True)
    assert cfg.beta == pytest.approx(0.02) and cfg.data.limit == 5 and cfg.fast is True


def test_set_overrides_beat_flags_and_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.3\nbeta: 0.4\nseed: 9\n")
    cfg = _cfg(["dummy", "x", "--config", str(path), "--lr", "0.2", "--set", "lr=1e-5", "--seed", "4"])
    assert cfg.lr == pytest.approx(1e-5)  # --set wins over --lr and the file
    assert cfg.beta == pytest.approx(0.4)  # from the file
    assert cfg.seed == 4  # the flag wins over the file


def test_bad_values():
    with pytest.raises(ConfigError, match="nope"):
        _cfg(["dummy", "x", "--set", "nope=1"])
    with pytest.raises(ConfigError, match="fast"):
        _cfg(["dummy", "x", "--set", "fast=3"])
    with pytest.raises(SystemExit):
        _cfg(["dummy", "x", "--kind", "k9"])  # not among the choices
    with pytest.raises(SystemExit):
        _cfg(["dummy", "x", "--lr", "fast"])  # not a float


def test_grouped_commands_and_commands_without_config():
    parser = build_parser([DUMMY, SERVE, EXPORT])
    ns = parser.parse_args(["label", "serve", "--port", "8080"])
    assert ns._command is SERVE and ns.flag__port == 8080
    assert not hasattr(ns, "_overrides")  # common=False: no --set/--seed
    ns = parser.parse_args(["label", "export", "--seed", "2"])
    assert ns._command is EXPORT and config_from_args(EXPORT, ns).seed == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["label"])


def test_help_lists_config_fields(capsys):
    with pytest.raises(SystemExit):
        build_parser([DUMMY]).parse_args(["dummy", "--help"])
    out = capsys.readouterr().out
    assert "data.limit = 0: how many records (0: all)" in out
    assert "lr = 0.001: learning rate" in out


def test_main_runs_the_command_and_reports_user_errors(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(cli, "_all_commands", lambda: [DUMMY, SERVE])
    assert cli.main(["dummy", "x", "--lr", "0.25"]) == 0
    assert isinstance(CALLS[-1], DummyConfig) and CALLS[-1].lr == 0.25
    assert cli.main(["label", "serve", "--port", "1"]) == 0
    assert CALLS[-1].flag__port == 1  # no config: the command gets the namespace

    def fail(cfg):
        raise UserError("bad input")

    monkeypatch.setattr(cli, "_all_commands", lambda: [Command("boom", "fails", fail, DummyConfig)])
    assert cli.main(["boom"]) == 2
    assert cli.main(["boom", "--set", "unknown=1"]) == 2  # a ConfigError is a UserError too


def test_config_given_by_path_is_imported_only_when_needed(capsys):
    """A "module:Class" config is resolved for the command's help and its run, not to build the
    parser: `rlhfkit --help` imports neither torch nor transformers."""
    lazy = Command("lazy", "a command whose config is named by path", CALLS.append, f"{__name__}:DummyConfig",
                   (Flag("--lr", "lr", "learning rate", type=float),))
    ns = build_parser([lazy]).parse_args(["lazy", "--lr", "0.5", "--set", "data.limit=3"])
    cfg = config_from_args(lazy, ns)
    assert isinstance(cfg, DummyConfig) and cfg.lr == 0.5 and cfg.data.limit == 3
    with pytest.raises(SystemExit):
        build_parser([lazy]).parse_args(["lazy", "--help"])
    assert "data.limit = 0: how many records (0: all)" in capsys.readouterr().out
    code = ("import sys; from rlhfkit.cli import _all_commands; from rlhfkit.command import build_parser; "
            "build_parser(_all_commands()); "
            "print(sorted(m for m in ('torch', 'transformers', 'rlhfkit.algos.sft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
