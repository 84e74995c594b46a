"""Clips of segments for human labelers: GIF (Pillow) or MP4 (imageio-ffmpeg).

Nothing is rendered while the agent trains: each recorded episode keeps its reset seed
and actions, and a segment is re-played in a `render_mode="rgb_array"` copy of the
(deterministic) environment when a human is asked about it. Steps past the end of a
terminated episode show the last frame dimmed, so "it fell" reads at a glance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlhfkit.control.envs import make_env
from rlhfkit.control.segments import Segment
from rlhfkit.errors import UserError


def segment_frames(env_id: str, seg: Segment, stride: int = 1, scale: int = 2) -> list[np.ndarray]:
    """RGB frames (H, W, 3) of the segment's steps, replayed from the episode's seed and actions."""
    env = make_env(env_id, render_mode="rgb_array")
    traj = seg.traj
    obs, _ = env.reset(seed=traj.reset_seed)
    frames: list[np.ndarray] = []
    end = seg.start + seg.real_steps
    for t in range(end):
        if t >= seg.start and (t - seg.start) % stride == 0:
            frames.append(np.asarray(env.render())[::scale, ::scale])
        if not np.allclose(obs, traj.obs[t], atol=1e-4):
            raise UserError(f"{env_id}: replay diverged at step {t}; the environment is not deterministic, "
                            "so clips cannot be rebuilt from seeds")
        act = traj.actions[t]
        obs, *_ = env.step(act.item() if act.ndim == 0 else act)
    if seg.real_steps < seg.length:
        last = np.asarray(env.render())[::scale, ::scale]
        dim = (last.astype(np.float32) * 0.35).astype(np.uint8)
        frames += [dim] * int(np.ceil((seg.length - seg.real_steps) / stride))
    env.close()
    return frames


def write_clip(frames: list[np.ndarray], path: str | Path, fps: int = 25) -> Path:
    """Write frames to `path` (.gif or .mp4) and return it."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    elif path.suffix == ".mp4":
        try:
            imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
        except (ImportError, ValueError, RuntimeError) as e:
            raise UserError(f"writing {path}: MP4 needs the imageio-ffmpeg package ({e}); use .gif") from e
    else:
        raise UserError(f"{path}: clips are .gif or .mp4")
    return path


def render_segment(env_id: str, seg: Segment, path: str | Path, fps: int = 25) -> Path:
    return write_clip(segment_frames(env_id, seg), path, fps)
