"""Offline datasets on disk: round trip, errors that name the file and field, to-go sums and
normalized scores against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhfkit.errors import UserError
from rlhfkit.offline.dataset import (
    DatasetInfo,
    Episode,
    OfflineDataset,
    References,
    load_mixture,
    normalized_cost,
    normalized_score,
    read_info,
    save_mixture,
    to_go,
)


def episode(t: int, terminated: bool, discrete: bool = False, offset: float = 0.0) -> Episode:
    acts = (np.arange(t) % 2).astype(np.int64) if discrete else \
        np.linspace(-1, 1, 2 * t, dtype=np.float32).reshape(t, 2)
    return Episode(observations=np.arange((t + 1) * 3, dtype=np.float32).reshape(t + 1, 3) + offset,
                   actions=acts, rewards=np.arange(1, t + 1, dtype=np.float32),
                   costs=(np.arange(t) % 3 == 0).astype(np.float32),
                   terminations=np.eye(t, dtype=bool)[-1] if terminated else np.zeros(t, bool),
                   truncations=np.zeros(t, bool) if terminated else np.eye(t, dtype=bool)[-1])


def info(discrete: bool = False) -> DatasetInfo:
    return DatasetInfo(env_id="Test-v0", discrete=discrete, obs_dim=3, act_dim=2, max_episode_steps=10,
                       references=References(-5.0, 20.0), cost={"name": "none"},
                       action_low=None if discrete else [-1.0, -1.0], action_high=None if discrete else [1.0, 1.0])


@pytest.fixture
def saved(tmp_path):
    data = OfflineDataset(info(), "medium", [episode(4, True), episode(3, False, offset=100.0)])
    save_mixture(tmp_path, data)
    return tmp_path, data


@pytest.mark.parametrize("discrete", [False, True])
def test_round_trip_keeps_every_field(tmp_path, discrete) -> None:
    data = OfflineDataset(info(discrete), "expert", [episode(4, True, discrete), episode(2, False, discrete)])
    save_mixture(tmp_path, data)
    back = load_mixture(tmp_path, "expert")
    assert back.info.references == References(-5.0, 20.0) and back.info.discrete == discrete
    assert back.info.mixtures["expert"]["episodes"] == 2 and back.info.mixtures["expert"]["transitions"] == 6
    for a, b in zip(data.episodes, back.episodes):
        for name in ("observations", "actions", "rewards", "costs", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, "actions").dtype == getattr(b, "actions").dtype
    assert back.episodes[0].terminated and back.episodes[1].truncated
    assert back.returns.tolist() == [10.0, 3.0] and back.episode_costs.tolist() == [2.0, 1.0]


def test_stats_of_every_mixture_gather_in_dataset_json(saved) -> None:
    folder, data = saved
    save_mixture(folder, OfflineDataset(data.info, "random", [episode(2, True)]))
    stats = json.loads((folder / "dataset.json").read_text())["mixtures"]
    assert set(stats) == {"medium", "random"}
    assert stats["medium"]["terminated"] == 1 and stats["medium"]["truncated"] == 1
    assert stats["medium"]["return_max"] == 10.0 and stats["medium"]["cost_mean"] == 1.5


def _rewrite(path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del arrays[k]
    np.savez(path, **arrays)


@pytest.mark.parametrize("change, message", [
    ({"rewards": np.ones(5, np.float32)}, "field 'rewards' has 5 rows; the lengths add up to 7"),
    ({"observations": np.zeros((8, 3), np.float32)}, "field 'observations' needs 9 rows"),
    ({"costs": np.full(7, np.nan, np.float32)}, "field 'costs' must be finite"),
    ({"lengths": np.array([4, 0, 3])}, "field 'lengths' must list positive"),
    ({"costs": None}, "missing array(s) costs"),
])
def test_a_bad_field_is_named_with_its_file(saved, change, message) -> None:
    folder, _ = saved
    _rewrite(folder / "medium.npz", **change)
    with pytest.raises(UserError) as e:
        load_mixture(folder, "medium")
    assert str(folder / "medium.npz") in str(e.value) and message in str(e.value)


def test_a_corrupted_archive_is_a_user_error_naming_the_file(saved) -> None:
    folder, _ = saved
    path = folder / "medium.npz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # cut short, as by a full disk
    with pytest.raises(UserError, match="medium.npz: cannot read"):
        load_mixture(folder, "medium")
    path.write_bytes(b"not an archive at all")
    with pytest.raises(UserError, match="medium.npz: cannot read"):
        load_mixture(folder, "medium")


def test_a_missing_mixture_lists_what_the_folder_has(saved) -> None:
    folder, _ = saved
    with pytest.raises(UserError, match=r"expert.npz: no such mixture \(this folder has: medium\)"):
        load_mixture(folder, "expert")
    with pytest.raises(UserError, match="dataset.json: not found"):
        read_info(folder / "elsewhere")


@pytest.mark.parametrize("text, message", [
    ('{"env_id": "x",\n  oops}', "line 2: not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"env_id": "x", "discrete": false}', "missing field(s) obs_dim, act_dim, max_episode_steps, references"),
    (None, "unknown field(s) colour"),
    (None, "field 'references' needs numbers"),
])
def test_a_bad_dataset_json_names_file_and_field(saved, text, message) -> None:
    folder, _ = saved
    path = folder / "dataset.json"
    if text is None:
        data = json.loads(path.read_text())
        if "colour" in message:
            data["colour"] = "blue"
        else:
            data["references"] = {"random_return": "low"}
        text = json.dumps(data)
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_mixture(folder, "medium")
    assert str(path) in str(e.value) and message in str(e.value)


def test_to_go_sums_within_each_episode_only() -> None:
    terminated = np.array([1.0, 2.0, 3.0])  # an episode that reached a terminal state
    truncated = np.array([4.0, 5.0])  # one a time limit cut
    g1 = to_go([terminated, truncated])
    np.testing.assert_allclose(g1[0], [6.0, 5.0, 3.0])  # 3 is the last: nothing of the next episode
    np.testing.assert_allclose(g1[1], [9.0, 5.0])  # no bootstrapping after the cut
    g = to_go([terminated, truncated], gamma=0.5)
    np.testing.assert_allclose(g[0], [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0])
    np.testing.assert_allclose(g[1], [4 + 0.5 * 5, 5.0])
    assert all(x.dtype == np.float32 for x in g) and to_go([]) == []


def test_normalized_score_and_cost_by_hand() -> None:
    assert normalized_score(1100.0, 100.0, 2100.0) == pytest.approx(50.0)
    np.testing.assert_allclose(normalized_score(np.array([100.0, 2100.0, -900.0]), 100.0, 2100.0), [0, 100, -50])
    assert References(-5.0, 20.0).score(15.0) == pytest.approx(80.0)
    assert normalized_cost(15.0, 10.0) == pytest.approx(1.5)
    np.testing.assert_allclose(normalized_cost(np.array([0.0, 5.0]), 20.0), [0.0, 0.25])
    with pytest.raises(ValueError, match="equal"):
        normalized_score(1.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="positive"):
        normalized_cost(1.0, 0.0)


def test_an_episode_checks_its_lengths() -> None:
    e = episode(3, True)
    with pytest.raises(ValueError, match="needs 4 observations"):
        Episode(e.observations[:3], e.actions, e.rewards, e.costs, e.terminations, e.truncations)
    with pytest.raises(ValueError, match="'costs' has 2 steps"):
        Episode(e.observations, e.actions, e.rewards, e.costs[:2], e.terminations, e.truncations)
