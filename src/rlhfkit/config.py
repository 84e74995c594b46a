"""Config dataclasses: a default and a one-line doc for every field.

Every command's config is a (possibly nested) dataclass. A run resolves it from
three layers, later winning: the dataclass defaults, a YAML file (`--config`),
and `--set a.b=value` overrides. The resolved config is saved in the run dir.

    @dataclass
    class SFTConfig:
        lr: float = F(3e-4, "AdamW learning rate")
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


from rlhfkit.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override names an unknown field or a value of the wrong type."""


def F(default: Any, doc: str) -> Any:  # noqa: N802 - reads like a declaration
    """A dataclass field with a default and its one-line doc."""
    if isinstance(default, (list, dict, set)) or is_dataclass(default):
        value = default
        factory = (lambda: dataclasses.replace(value)) if is_dataclass(value) else (lambda: type(value)(value))
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def field_docs(cls: type, prefix: str = "") -> dict[str, tuple[Any, str]]:
    """Flat map `a.b` -> (default, doc), for `--help-config` and the README."""
    out: dict[str, tuple[Any, str]] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        name = prefix + f.name
        sub = hints[f.name]
        if isinstance(sub, type) and is_dataclass(sub):
            out.update(field_docs(sub, name + "."))
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[name] = (default, f.metadata.get("doc", ""))
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check and convert a YAML value to the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, where + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint in (float, int) and isinstance(value, str):
        # PyYAML follows YAML 1.1, where `1e-4` (no dot) is a string, not a float
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r} (YAML reads a bare yes/no/on/off as "
                              f"true/false: quote it, e.g. {where}='\"no\"')")
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build `cls` from a mapping, refusing unknown keys and wrong types."""
    return _apply(cls(), data, prefix)  # type: ignore[call-arg]


def _apply(base: T, data: dict[str, Any], prefix: str) -> T:
    """Set the fields named in `data` on `base`. A nested dataclass is updated in place, so a
    parent's non-default nested default (`model: ModelConfig = F(ModelConfig(n_layer=2), ...)`)
    keeps the fields an override does not name."""
    cls = type(base)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(prefix + u for u in unknown)}; known: {sorted(known)}")
    for k, v in data.items():
        cur = getattr(base, k)
        if is_dataclass(cur) and isinstance(v, dict):
            setattr(base, k, _apply(cur, v, prefix + k + "."))
        else:
            setattr(base, k, _coerce(v, hints[k], prefix + k))
    return base


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(item: str) -> dict[str, Any]:
    """`a.b=3` -> {"a": {"b": 3}}; the value is read as YAML (so `true`, `1e-4`, `[1,2]` work)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def resolve(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
            extra: dict[str, Any] | None = None) -> T:
    """Defaults <- YAML file <- `extra` (command-line flags) <- `--set` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: no such config file") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the config file must hold a mapping at top level")
        data = _merge(data, loaded)
    if extra:
        data = _merge(data, extra)
    for item in overrides or []:
        data = _merge(data, parse_override(item))
    return from_dict(cls, data)


def save(cfg: Any, path: str | Path) -> None:
    from rlhfkit.runtime import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


@dataclass
class ModelConfig:
    """Which language model to start from, or the tiny GPT to build when none is given."""

    path: str | None = F(None, "local Hugging Face model dir (config + weights + tokenizer); None builds a tiny GPT")
    n_layer: int = F(4, "tiny GPT: transformer blocks")
    n_head: int = F(4, "tiny GPT: attention heads")
    n_embd: int = F(128, "tiny GPT: hidden size")
    n_positions: int = F(128, "tiny GPT: context length in tokens")
    vocab_size: int = F(2048, "tiny GPT: BPE vocabulary size trained on the corpus")
    dropout: float = F(0.0, "tiny GPT: dropout on embeddings, attention and residuals")


@dataclass
class RunConfig:
    """Fields every command shares (set by --seed, --out, --log, --resume)."""

    seed: int = F(0, "random seed for torch, numpy and python")
    out: str | None = F(None, "run directory; default runs/<command>-<time>")
    log: list[str] = F([], "extra metric sinks: tensorboard, wandb (offline)")
    resume: bool = F(False, "resume from the last checkpoint in `out`")
    device: str = F("auto", "auto, cpu, cuda, cuda:1, ...")
