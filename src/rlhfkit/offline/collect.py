"""`rlhfkit offline collect`: D4RL-style datasets built here, with no download.

D4RL (Fu et al. 2020, sec. 5 and app. C) trains one behaviour policy per task and mixes:

  random         episodes of the uniform random policy
  medium         episodes of a checkpoint that scores about 1/3 of the way from random to expert
  medium-replay  every episode the learner experienced until that checkpoint (its replay buffer)
  expert         episodes of the trained policy (here: the checkpoint with the best evaluation)
  medium-expert  medium and expert together

The behaviour policy is a stable-baselines3 agent (PPO or SAC, `envs.ENVS`) learning the
environment's reward on the cost-wrapped environment; a recorder keeps every episode it
experiences. Policy episodes are sampled from the stochastic policy, as D4RL does. The folder

    dataset.json, <mixture>.npz       (`dataset.py`)
    behaviour/step-N.zip              the checkpoints (SB3 `save`)
    behaviour/episodes.npz            the learner's episodes, with the step each ended at
    behaviour/training.json           checkpoint evaluations; written last, marks training done

is a cache: a folder built with the same settings is reused, and a build cut short resumes
(the behaviour policy and the mixtures already saved are loaded, not rebuilt).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback

from rlhfkit.config import F, RunConfig
from rlhfkit.control.agent import make_agent
from rlhfkit.errors import UserError
from rlhfkit.logging import get_logger, progress
from rlhfkit.offline.dataset import (
    MIXTURES,
    DatasetInfo,
    Episode,
    OfflineDataset,
    References,
    load_mixture,
    read_info,
    save_mixture,
)
from rlhfkit.offline.envs import (
    RecordEpisodes,
    dataset_spaces,
    env_name,
    make_env,
    random_policy,
    resolve_cost,
    rollout,
    spec_for,
)
from rlhfkit.runtime import RunDir, atomic_path, seed_everything, write_json

log = get_logger(__name__)
_FORMAT = 1  # bump when a change to this file changes the data a setting produces
_SEED_STRIDE = 1_000_000  # seed s uses seeds s * stride + phase offset (< stride): no two runs share one


@dataclass
class CollectConfig(RunConfig):
    """`rlhfkit offline collect`: train a behaviour policy, then collect the five D4RL mixtures."""

    env: str = F("Hopper-v5", "Gymnasium id; Hopper-v5, CartPole-v1, Pendulum-v1 have tuned defaults")
    steps: int = F(0, "behaviour policy's training env steps; 0 = the env's default (Hopper 120k, CartPole 50k)")
    transitions: int = F(0, "transitions per collected mixture (random, medium, expert); 0 = the env's default")
    cost: dict[str, Any] = F({}, "cost wrapper, e.g. {name: velocity, threshold: 1.0}; empty = the env's default")
    algo_kwargs: dict[str, Any] = F({}, "stable-baselines3 kwargs over the env's, e.g. {learning_starts: 1000}")
    checkpoints: int = F(20, "behaviour checkpoints saved (and evaluated) at even intervals of training")
    eval_episodes: int = F(10, "episodes per checkpoint evaluation (stochastic policy, as the data is sampled)")
    medium_fraction: float = F(1 / 3, "medium checkpoint: return nearest random + fraction * (expert - random)")
    n_envs: int = F(8, "environments stepped side by side while collecting (one policy call per batch)")
    rebuild: bool = F(False, "ignore what the output folder holds and build everything again")
    threads: int = F(1, "torch threads; one is fastest for these small networks, most of all on a busy machine")


def collect_settings(cfg: CollectConfig) -> dict[str, Any]:
    """Everything that shapes the data; a cached folder is reused only when these match."""
    spec = spec_for(cfg.env)
    return {"format": _FORMAT, "env": cfg.env, "cost": resolve_cost(cfg.env, cfg.cost or None),
            "algo": spec.algo, "algo_kwargs": {**spec.algo_kwargs, **cfg.algo_kwargs},
            "steps": cfg.steps or spec.train_steps, "checkpoints": cfg.checkpoints,
            "eval_episodes": cfg.eval_episodes, "seed": cfg.seed,
            "transitions": cfg.transitions or spec.transitions, "medium_fraction": cfg.medium_fraction,
            "n_envs": cfg.n_envs}


_TRAIN_KEYS = ("format", "env", "cost", "algo", "algo_kwargs", "steps", "checkpoints", "eval_episodes", "seed",
               "n_envs")


@dataclass
class Behaviour:
    """The trained behaviour policy: its evaluated checkpoints and every episode it experienced."""

    checkpoints: list[dict[str, Any]]  # {"step", "path", "eval_return", "eval_cost"}
    episodes: list[Episode]
    end_steps: list[int]  # the training step at which each episode ended
    train_s: float


def load_policy(path: str | Path, algo: str) -> Any:
    return {"ppo": PPO, "sac": SAC}[algo].load(str(path), device="cpu")


def policy_act(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The stochastic policy (deterministic=False), as D4RL samples its datasets."""
    return lambda obs: model.predict(obs, deterministic=False)[0]


class _Checkpoints(BaseCallback):
    """Saves and evaluates the learner at the given env steps; moves the progress bar."""

    def __init__(self, at: set[int], save: Callable[[Any, int], None], bar: Any) -> None:
        super().__init__()
        self.at, self.save, self.bar = at, save, bar

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.num_timesteps in self.at:
            self.at.discard(self.num_timesteps)
            self.save(self.model, self.num_timesteps)
        return True


def train_behaviour(s: dict[str, Any], folder: Path) -> Behaviour:
    """Train the behaviour policy on the cost-wrapped env (it sees the reward only), recording
    every episode and saving an evaluated checkpoint at each of `checkpoints` even steps."""
    folder.mkdir(parents=True, exist_ok=True)
    steps, n = s["steps"], s["checkpoints"]
    env = RecordEpisodes(make_env(s["env"], s["cost"]))
    agent = make_agent(s["algo"], env, seed=s["seed"], overrides=s["algo_kwargs"])
    checkpoints: list[dict[str, Any]] = []

    def save(model: Any, step: int) -> None:  # every checkpoint meets the same starts: fairer to compare
        path = folder / f"step-{step}.zip"
        model.save(str(path))
        eps = rollout(lambda: make_env(s["env"], s["cost"]), policy_act(model),
                      seed=_SEED_STRIDE * s["seed"] + 400_000, episodes=s["eval_episodes"],
                      n_envs=s["n_envs"], desc=f"evaluate step {step}")
        checkpoints.append({"step": step, "path": path.name, "eval_return": float(np.mean([e.ret for e in eps])),
                            "eval_cost": float(np.mean([e.cost for e in eps]))})
        log.info("%s step %d: return %.1f, cost %.1f", s["env"], step, checkpoints[-1]["eval_return"],
                 checkpoints[-1]["eval_cost"])

    start = time.perf_counter()
    with progress(total=steps, desc=f"train {s['algo']} on {s['env']}") as bar:
        agent.learn(steps, callback=_Checkpoints({round(steps * k / n) for k in range(1, n + 1)}, save, bar))
    behaviour = Behaviour(checkpoints, env.episodes, env.end_steps, time.perf_counter() - start)
    _save_behaviour(folder, behaviour, {k: s[k] for k in _TRAIN_KEYS})
    return behaviour


def _save_behaviour(folder: Path, b: Behaviour, settings: dict[str, Any]) -> None:
    arrays = {k: np.concatenate([getattr(e, k) for e in b.episodes])
              for k in ("observations", "actions", "rewards", "costs", "terminations", "truncations")}
    with atomic_path(folder / "episodes.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, lengths=np.asarray([len(e) for e in b.episodes]),
                            end_steps=np.asarray(b.end_steps), **arrays)
    write_json(folder / "training.json", {"settings": settings, "checkpoints": b.checkpoints, "train_s": b.train_s,
                                          "episodes": len(b.episodes)})


def load_behaviour(folder: Path, settings: dict[str, Any]) -> Behaviour | None:
    """The cached behaviour policy's record, when its training finished with these settings."""
    marker = folder / "training.json"
    if not marker.exists():
        return None
    meta = json.loads(marker.read_text())
    if meta.get("settings") != {k: settings[k] for k in _TRAIN_KEYS}:
        return None
    if not all((folder / c["path"]).exists() for c in meta["checkpoints"]):
        return None
    try:
        with open(folder / "episodes.npz", "rb") as f, np.load(f) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{folder / 'episodes.npz'}: unreadable ({e}); delete {folder} to retrain") from e
    episodes, i, o = [], 0, 0
    for n in a["lengths"].tolist():
        episodes.append(Episode(a["observations"][o: o + n + 1], a["actions"][i: i + n], a["rewards"][i: i + n],
                                a["costs"][i: i + n], a["terminations"][i: i + n], a["truncations"][i: i + n]))
        i, o = i + n, o + n + 1
    return Behaviour(meta["checkpoints"], episodes, a["end_steps"].tolist(), float(meta["train_s"]))


def pick_medium(checkpoints: list[dict[str, Any]], expert_step: int, refs: References,
                fraction: float) -> dict[str, Any]:
    """D4RL's medium policy: the checkpoint whose evaluation return is nearest to
    random + fraction * (expert - random); the expert's own checkpoint only if it is the only one."""
    target = refs.random_return + fraction * (refs.expert_return - refs.random_return)
    pool = [c for c in checkpoints if c["step"] != expert_step] or checkpoints
    return min(pool, key=lambda c: (abs(c["eval_return"] - target), c["step"]))


def _cached(folder: Path, settings: dict[str, Any], rebuild: bool) -> DatasetInfo | None:
    """The folder's info when it was built with these settings (else None, and say why)."""
    if rebuild or not (folder / "dataset.json").exists():
        return None
    info = read_info(folder)
    old = info.meta.get("settings")
    if old != settings:
        changed = sorted(k for k in set(settings) | set(old or {}) if (old or {}).get(k) != settings.get(k))
        log.info("%s was built with other settings (%s differ); building again", folder, ", ".join(changed))
        return None
    return info


def _collect_mixtures(folder: Path, s: dict[str, Any], b: Behaviour, have: set[str],
                      seconds: dict[str, float]) -> tuple[dict[str, list[Episode]], References, dict, dict]:
    """Random, expert, medium (collected, or loaded when in `have`), then medium-replay and
    medium-expert; each policy phase is seeded on its own, so a resumed build draws the same."""
    data: dict[str, list[Episode]] = {}
    base = _SEED_STRIDE * s["seed"]

    def phase(name: str, act: Callable[[], Callable[[np.ndarray], np.ndarray]], seed: int) -> None:
        if name in have:
            data[name] = load_mixture(folder, name).episodes
            log.info("%s: reusing %s.npz", folder, name)
            return
        t = time.perf_counter()
        seed_everything(seed)  # the stochastic policy's draws do not depend on what ran before
        data[name] = rollout(lambda: make_env(s["env"], s["cost"]), act(), seed=seed, transitions=s["transitions"],
                             n_envs=s["n_envs"], desc=f"collect {name}")
        seconds[name] = time.perf_counter() - t

    def checkpoint(ck: dict) -> Callable[[np.ndarray], np.ndarray]:
        return policy_act(load_policy(folder / "behaviour" / ck["path"], s["algo"]))

    expert_ck = max(b.checkpoints, key=lambda c: (c["eval_return"], c["step"]))
    space = make_env(s["env"], s["cost"]).action_space
    phase("random", lambda: random_policy(space, base + 100_000), base + 100_000)
    phase("expert", lambda: checkpoint(expert_ck), base + 200_000)
    refs = References(float(np.mean([e.ret for e in data["random"]])), float(np.mean([e.ret for e in data["expert"]])))
    medium_ck = pick_medium(b.checkpoints, expert_ck["step"], refs, s["medium_fraction"])
    phase("medium", lambda: checkpoint(medium_ck), base + 300_000)
    # D4RL's medium-replay: the learner's own experience until it reached the medium policy
    data["medium-replay"] = [e for e, end in zip(b.episodes, b.end_steps) if end <= medium_ck["step"]] or b.episodes[:1]
    data["medium-expert"] = data["medium"] + data["expert"]
    return data, refs, expert_ck, medium_ck


def run_collect(cfg: CollectConfig) -> dict[str, Any]:
    if cfg.steps < 0 or cfg.transitions < 0 or cfg.checkpoints < 1 or cfg.eval_episodes < 1 or cfg.n_envs < 1:
        raise UserError("steps and transitions must be >= 0; checkpoints, eval_episodes and n_envs >= 1")
    if not 0.0 < cfg.medium_fraction < 1.0:
        raise UserError(f"medium_fraction must lie in (0, 1), got {cfg.medium_fraction}")
    s = collect_settings(cfg)
    if s["steps"] < s["checkpoints"]:
        raise UserError(f"--steps {s['steps']}: need at least one env step per checkpoint ({s['checkpoints']})")
    cfg = dataclasses.replace(cfg, out=cfg.out or f"runs/offline-data/{cfg.env}")
    folder, start = Path(cfg.out), time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    seed_everything(cfg.seed)
    info = _cached(folder, s, cfg.rebuild)
    if info is not None and all((folder / f"{m}.npz").exists() for m in MIXTURES):
        log.info("%s: all mixtures already built with these settings; reusing them (--set rebuild=true to "
                 "build again)", folder)
        return _summary(folder, info, reused=True, wall_s=time.perf_counter() - start)
    if info is None:  # mixtures of other settings must not be mistaken for ours if this build is cut short
        for m in MIXTURES:
            (folder / f"{m}.npz").unlink(missing_ok=True)
    run = RunDir.create(folder, cfg)
    have = {m for m in ("random", "expert", "medium") if info is not None and (folder / f"{m}.npz").exists()}
    seconds = {k: v for k, v in (info.meta.get("seconds", {}) if info else {}).items() if k in have}
    behaviour = None if cfg.rebuild else load_behaviour(folder / "behaviour", s)
    if behaviour is None:
        behaviour = train_behaviour(s, folder / "behaviour")
    else:
        log.info("%s: reusing the behaviour policy trained with these settings", folder / "behaviour")
    seconds["train"] = behaviour.train_s
    data, refs, expert_ck, medium_ck = _collect_mixtures(folder, s, behaviour, have, seconds)
    meta = {"settings": s, "algo": s["algo"], "algo_kwargs": s["algo_kwargs"], "steps": s["steps"],
            "checkpoints": [{k: c[k] for k in ("step", "eval_return", "eval_cost")} for c in behaviour.checkpoints],
            "expert_step": expert_ck["step"], "medium_step": medium_ck["step"],
            "training_episodes": len(behaviour.episodes), "seconds": seconds,
            "collect_s": float(sum(seconds.values()))}
    probe = make_env(s["env"], s["cost"])
    info = DatasetInfo(references=refs, cost=s["cost"], meta=meta, **dataset_spaces(probe, s["env"]))
    probe.close()
    for name in MIXTURES:
        save_mixture(folder, OfflineDataset(info, name, data[name]))
    log.info("%s: random return %.1f, expert %.1f (step %d), medium step %d; built in %.0f s", folder,
             refs.random_return, refs.expert_return, expert_ck["step"], medium_ck["step"], meta["collect_s"])
    summary = _summary(folder, info, reused=False, wall_s=time.perf_counter() - start)
    run.write_summary(summary)
    return summary


def _summary(folder: Path, info: DatasetInfo, reused: bool, wall_s: float) -> dict[str, Any]:
    return {"env": info.env_id, "out": str(folder), "reused": reused, "wall_s": wall_s,
            "references": dataclasses.asdict(info.references), "cost": info.cost, "mixtures": info.mixtures,
            "medium_step": info.meta.get("medium_step"), "expert_step": info.meta.get("expert_step"),
            "checkpoints": info.meta.get("checkpoints"), "seconds": info.meta.get("seconds"),
            "collect_s": info.meta.get("collect_s")}


# --- Minari export --------------------------------------------------------------------------


@contextmanager
def _removed_on_error(path: Path) -> Iterator[None]:
    """A dataset Minari did not finish writing is removed, so it is not taken for a whole one."""
    try:
        yield
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of the block, then put it back."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def export_minari(folder: str | Path, mixture: str, out_dir: str | Path | None = None, *,
                  namespace: str = "rlhfkit", overwrite: bool = False) -> str:
    """Write `<folder>/<mixture>.npz` as the Minari dataset `<namespace>/<env>/<mixture>-v0`
    (Minari's arrow format) under `out_dir` (default: $MINARI_DATASETS_PATH, else
    `<folder>/minari`); returns its id. Minari's `infos` run beside the observations (T + 1
    rows, the first from the reset), so `infos["cost"][t + 1]` is the cost of step t."""
    try:
        import minari
        import pyarrow  # noqa: F401  (Minari's arrow storage needs it)
        from minari.data_collector import EpisodeBuffer
        from minari.storage import get_dataset_path
    except ImportError as e:
        raise UserError(f"Minari export needs the minari and pyarrow packages ({e}): pip install minari pyarrow, "
                        "or pip install 'rlhfkit[offline]'") from e
    data = load_mixture(folder, mixture)
    info = data.info
    root = Path(out_dir or os.environ.get("MINARI_DATASETS_PATH") or Path(folder) / "minari").resolve()
    dataset_id = f"{namespace}/{env_name(info.env_id).lower()}/{mixture}-v0"
    env = make_env(info.env_id, info.cost)
    obs_dtype, act_dtype = env.observation_space.dtype, env.action_space.dtype
    buffers = [EpisodeBuffer(id=i, observations=e.observations.astype(obs_dtype), actions=e.actions.astype(act_dtype),
                             rewards=e.rewards.tolist(), terminations=e.terminations.tolist(),
                             truncations=e.truncations.tolist(), infos={"cost": [0.0, *e.costs.tolist()]})
               for i, e in enumerate(data.episodes)]
    with _environ("MINARI_DATASETS_PATH", str(root)):  # Minari reads it at each call
        path = get_dataset_path(dataset_id)
        if path.exists():
            if not overwrite:
                raise UserError(f"{path}: the Minari dataset {dataset_id} exists; pass --overwrite to replace it")
            shutil.rmtree(path)
        with warnings.catch_warnings(), _removed_on_error(path):
            warnings.filterwarnings("ignore", message=r"`(code_permalink|author_email)` is set to None")  # optional
            minari.create_dataset_from_buffers(
                dataset_id, buffers, env=info.env_id, eval_env=info.env_id, algorithm_name=info.meta.get("algo"),
                author="rlhfkit", description=f"rlhfkit offline collect: {info.env_id} {mixture} (D4RL-style); "
                f"per-step costs in infos['cost'] from the cost wrapper {info.cost}",
                ref_min_score=info.references.random_return, ref_max_score=info.references.expert_return,
                data_format="arrow")
    env.close()
    log.info("wrote Minari dataset %s (%d episodes) under %s", dataset_id, len(buffers), root)
    return dataset_id


@dataclass
class ExportConfig(RunConfig):
    """`rlhfkit offline export-minari`: `--out` is the Minari datasets root."""

    data: str = F("runs/offline-data/Hopper-v5", "dataset folder written by `rlhfkit offline collect`")
    mixture: str = F("all", f"mixture to export ({', '.join(MIXTURES)}), or all")
    namespace: str = F("rlhfkit", "Minari namespace: ids read NAMESPACE/<env>/<mixture>-v0")
    overwrite: bool = F(False, "replace Minari datasets that already exist")


def run_export_minari(cfg: ExportConfig) -> list[str]:
    names = list(MIXTURES) if cfg.mixture == "all" else [cfg.mixture]
    if any(m not in MIXTURES for m in names):
        raise UserError(f"--mixture {cfg.mixture!r}: use one of {', '.join(MIXTURES)} or all")
    return [export_minari(cfg.data, m, cfg.out, namespace=cfg.namespace, overwrite=cfg.overwrite) for m in names]
