"""Clips render from replayed episodes; the web labeler queues them in the label store and
turns the answers into comparisons, behind the same interface as the synthetic labeler."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.control.envs import make_env
from rlhfkit.control.queries import select_queries
from rlhfkit.control.render import segment_frames, write_clip
from rlhfkit.control.reward import RewardEnsemble

pytest.importorskip("sqlalchemy")


def test_clip_replays_segment_and_dims_absorbing_steps(tmp_path, cartpole_info, cartpole_trajs) -> None:
    from rlhfkit.control.segments import make_segment

    traj = cartpole_trajs[0]
    seg = make_segment(cartpole_info, traj, start=max(0, len(traj) - 4), k=8)
    frames = segment_frames("CartPole-v1", seg)
    assert len(frames) == 8 and frames[0].ndim == 3
    assert frames[-1].mean() < frames[0].mean()  # dimmed absorbing frames
    path = write_clip(frames, tmp_path / "c.gif")
    assert path.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_web_labeler_round_trip(tmp_path, cartpole_info, cartpole_trajs) -> None:
    from rlhfkit.control.web import WebLabeler
    from rlhfkit.labeling.store import LabelStore

    store = LabelStore.open(str(tmp_path / "labels.db"))
    lab = WebLabeler(store, "cp", "CartPole-v1", tmp_path / "clips", timeout=0.0)
    ens = RewardEnsemble(cartpole_info.feature_dim, members=2)
    qs = select_queries("random", 3, cartpole_info, cartpole_trajs, 6, ens, np.random.default_rng(0))
    lab.request(qs)
    assert lab.pending() == 3 and lab.answers() == []
    human, _ = store.add_user("alice", "correct horse battery")
    for choice in ("A", "tie", "cant_tell"):
        item = store.next_item("cp", human)
        store.submit(human, item.id, f"key-{item.id:08d}", {"choice": choice})
    got = sorted(mu for _, mu in lab.answers(wait=True))
    assert got == [0.5, 1.0] and lab.pending() == 0  # "can't tell" is dropped
