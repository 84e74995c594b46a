"""Experts: the cache location, loading a cached SB3 model without training, unknown names."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.imitation import experts
from rlhfkit.imitation.experts import ExpertError, expert_cache_dir, make_expert, ppo_expert, ppo_expert_path


def test_cache_dir_follows_env_vars(monkeypatch, tmp_path):
    monkeypatch.delenv("RLHFKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert expert_cache_dir() == tmp_path / "xdg" / "rlhfkit" / "experts"
    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path / "mine"))
    assert expert_cache_dir() == tmp_path / "mine" / "experts"
    assert ppo_expert_path("CartPole-v1", 3).name == "CartPole-v1-ppo-seed3.zip"


def test_cached_ppo_expert_is_loaded_not_trained(monkeypatch, tmp_path):
    from stable_baselines3 import PPO

    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path))
    path = ppo_expert_path("CartPole-v1", 0)
    path.parent.mkdir(parents=True)
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", n_steps=64, batch_size=64)
    model.save(str(path))
    monkeypatch.setattr(experts, "_train_ppo", lambda *a: pytest.fail("a cached expert must not be retrained"))
    expert = ppo_expert("CartPole-v1")
    obs = np.zeros((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(expert.act(obs), model.predict(obs, deterministic=True)[0])


def test_unknown_expert_or_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path))
    with pytest.raises(ExpertError, match="unknown expert"):
        make_expert("oracle", "CartPole-v1")
    with pytest.raises(ExpertError, match="no PPO settings"):
        ppo_expert("MountainCar-v0")
