"""config.py: F docs, YAML + --set layering with YAML-typed values, errors, nested dataclasses, RunConfig."""

from dataclasses import dataclass, fields
from typing import Literal, Optional

import pytest
import yaml

from rlhfkit.config import F, ConfigError, ModelConfig, RunConfig, field_docs, from_dict, parse_override, resolve, save


@dataclass
class OptimConfig:
    lr: float = F(3e-4, "learning rate")
    betas: tuple[float, float] = F((0.9, 0.95), "AdamW betas")


@dataclass
class DemoConfig(RunConfig):
    steps: int = F(10, "optimizer steps")
    name: str = F("demo", "a name")
    use_lora: bool = F(False, "train LoRA adapters")
    kind: Literal["k1", "k2", "k3"] = F("k1", "KL estimator")
    layers: list[int] = F([1, 2], "which layers")
    limit: Optional[int] = F(None, "cap on examples")
    optim: OptimConfig = F(OptimConfig(), "optimizer")
    model: ModelConfig = F(ModelConfig(n_layer=2), "model to train")


def test_field_docs_flatten_nested_fields_with_defaults_and_docs():
    docs = field_docs(DemoConfig)
    assert docs["steps"] == (10, "optimizer steps")
    assert docs["optim.lr"] == (3e-4, "learning rate")
    assert docs["model.n_embd"] == (128, "tiny GPT: hidden size")
    assert docs["seed"] == (0, "random seed for torch, numpy and python")
    assert "optim" not in docs and "model" not in docs
    # every field of the shipped configs is documented
    for cls in (RunConfig, ModelConfig, DemoConfig):
        assert all(doc for _, doc in field_docs(cls).values())


def test_mutable_defaults_are_not_shared():
    a, b = DemoConfig(), DemoConfig()
    a.layers.append(3)
    a.optim.lr = 1.0
    assert b.layers == [1, 2] and b.optim.lr == 3e-4


def test_resolve_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 50\nname: from-yaml\noptim:\n  lr: 0.01\nmodel:\n  n_head: 8\n")
    cfg = resolve(DemoConfig, path, ["steps=7", "use_lora=true", "layers=[3, 4]", "optim.lr=1e-4", "limit=null"])
    assert cfg.steps == 7 and isinstance(cfg.steps, int)
    assert cfg.name == "from-yaml"
    assert cfg.use_lora is True
    assert cfg.layers == [3, 4]
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.limit is None
    assert cfg.model.n_head == 8
    assert cfg.model.n_layer == 2  # the parent's nested default survives a partial override
    assert isinstance(cfg.optim, OptimConfig) and isinstance(cfg.model, ModelConfig)


def test_yaml_typed_override_values():
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert parse_override("x=true") == {"x": True}
    assert parse_override("x=[1, 2]") == {"x": [1, 2]}
    assert parse_override("x=hello=world") == {"x": "hello=world"}
    assert parse_override("x=") == {"x": ""}
    assert resolve(DemoConfig, overrides=["name=123"]).name == "123"  # a str field takes a YAML number as text
    assert resolve(DemoConfig, overrides=["optim.lr=2"]).optim.lr == 2.0
    assert resolve(DemoConfig, overrides=["steps=1e3"]).steps == 1000
    assert resolve(DemoConfig, overrides=["limit=5"]).limit == 5
    assert resolve(DemoConfig, overrides=["kind=k3"]).kind == "k3"
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("steps")


def test_scientific_notation_in_yaml_files(tmp_path):
    # PyYAML reads `1e-4` (no dot) as a string; a float field must still take it
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n")
    assert resolve(DemoConfig, path).optim.lr == pytest.approx(1e-4)


def test_extra_layer_sits_between_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 50\nseed: 1\n")
    cfg = resolve(DemoConfig, path, ["seed=3"], extra={"steps": 60, "seed": 2})
    assert (cfg.steps, cfg.seed) == (60, 3)


@pytest.mark.parametrize(
    "override, match",
    [
        ("stepz=3", "stepz"),
        ("optim.momentum=0.9", "optim.momentum"),
        ("steps=abc", "steps"),
        ("steps=2.5", "steps"),
        ("steps=true", "steps"),
        ("use_lora=1", "use_lora"),
        ("optim.lr=fast", "optim.lr"),
        ("kind=k4", "kind"),
        ("layers=3", "layers"),
        ("layers=[1, x]", r"layers\[1\]"),
        ("optim=3", "optim"),
        ("name=[1]", "name"),
        ("limit=abc", "limit"),
    ],
)
def test_unknown_fields_and_wrong_types_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        resolve(DemoConfig, overrides=[override])


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        resolve(DemoConfig, tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(DemoConfig, bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve(DemoConfig, top)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert resolve(DemoConfig, empty) == DemoConfig()


def test_run_config_fields_and_save_round_trip(tmp_path):
    assert [f.name for f in fields(RunConfig)] == ["seed", "out", "log", "resume", "device"]
    rc = RunConfig()
    assert (rc.seed, rc.out, rc.log, rc.resume, rc.device) == (0, None, [], False, "auto")
    cfg = resolve(DemoConfig, overrides=["seed=5", "out=runs/x", "log=[tensorboard]", "resume=true", "model.n_head=2"])
    path = tmp_path / "config.yaml"
    save(cfg, path)
    saved = yaml.safe_load(path.read_text())
    assert saved["seed"] == 5 and saved["model"]["n_head"] == 2 and saved["optim"]["lr"] == 3e-4
    assert resolve(DemoConfig, path) == cfg  # a saved config resolves back to itself


def test_from_dict_builds_nested():
    cfg = from_dict(DemoConfig, {"optim": {"lr": 0.5}, "model": {"path": "/m"}})
    assert cfg.optim == OptimConfig(lr=0.5)
    assert cfg.model.path == "/m" and cfg.model.n_layer == 2
