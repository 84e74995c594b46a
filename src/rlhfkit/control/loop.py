"""Deep RL from human preferences (Christiano et al. 2017, sec. 2.2), as three processes
taking turns: the agent acts and learns on the predicted reward; pairs of its segments are
chosen and labeled; the reward ensemble is refitted to all labels so far.

    collect random-policy episodes; ask the first share of the comparisons; fit reward
    for each round:
        agent learns for steps_per_round env steps on r_hat (its episodes are recorded)
        ask this round's comparisons about recent segments; fit reward; renormalize
        (off-policy agents: relabel the replay buffer)
        evaluate the true return (separately, never shown to the agent)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlhfkit.config import F, RunConfig
from rlhfkit.control import agent as agent_lib
from rlhfkit.control import checkpoint as ckpt_lib
from rlhfkit.control.envs import SpaceInfo, absorbing_features, make_env, space_info
from rlhfkit.control.labelers import Labeler
from rlhfkit.control.queries import Query, select_queries
from rlhfkit.control.reward import PairData, RewardEnsemble
from rlhfkit.control.segments import EpisodeRecorder, Trajectory, random_rollouts, sample_segments
from rlhfkit.logging import MetricsLogger, get_logger, progress

log = get_logger(__name__)


@dataclass
class ControlConfig(RunConfig):
    """`rlhfkit control train`: one set of defaults for every environment."""

    env: str = F("CartPole-v1", "Gymnasium id (Box observations; Discrete or Box actions)")
    comparisons: int = F(100, "total comparisons to ask for")
    query: str = F("random", "query rule: random, disagreement or mix")
    labeler: str = F("synthetic", "synthetic (true return) or web (the labeling app)")
    labeler_beta: float | None = F(None, "synthetic: Bradley-Terry noise scale on true returns; None = always right")
    labeler_error: float = F(0.0, "synthetic: chance of answering at random")
    algo: str = F("auto", "RL algorithm: auto (PPO for Discrete, SAC for Box actions), ppo, a2c, sac")
    timesteps: int = F(0, "agent env steps; 0 = the algorithm's default (PPO 50k, SAC 15k)")
    rounds: int = F(10, "reward refits / query rounds during agent training")
    schedule_decay: float = F(1.0, "round i gets comparisons in proportion to 1 / (1 + decay * i)")
    initial_random_steps: int = F(2000, "random-policy env steps collected before training")
    segment_length: int = F(50, "k: steps per segment")
    recent_episodes: int = F(30, "segments are drawn from this many most recent episodes")
    pool_factor: int = F(10, "disagreement: candidate pool = pool_factor x queries")
    ensemble: int = F(3, "reward ensemble members")
    hidden: int = F(64, "reward MLP width (two hidden layers)")
    reward_lr: float = F(1e-3, "reward Adam learning rate")
    reward_steps: int = F(300, "reward gradient steps per member per refit")
    l2: float = F(1e-4, "initial L2 weight (then adapted to keep val loss 1.1-1.5x train loss)")
    val_fraction: float = F(0.2, "share of comparisons held out for validation")
    noise: float = F(0.1, "chance the labeler answers at random, built into the likelihood")
    eval_episodes: int = F(10, "episodes per true-return evaluation")
    baseline: bool = F(True, "also train the same agent on the true reward for the same env steps")
    clips_dir: str | None = F(None, "web labeler: where clips are written (default OUT/clips)")
    web_db: str | None = F(None, "web labeler: the labeling app's database URL or file")
    web_timeout: float = F(3600.0, "web labeler: seconds to wait for answers before going on")


def comparison_schedule(total: int, rounds: int, decay: float = 1.0) -> list[int]:
    """Comparisons to ask at round 0 (before the agent trains) .. rounds; front-loaded like
    the paper's rate proportional to 1 / (T + t): weights 1 / (1 + decay * i)."""
    w = 1.0 / (1.0 + decay * np.arange(rounds + 1))
    cum = np.round(total * np.cumsum(w) / w.sum()).astype(int)
    return np.diff(np.concatenate([[0], cum])).tolist()


@dataclass
class Dataset:
    """Labeled pairs, each assigned to train or validation once, when it arrives."""

    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    mu: list[float] = field(default_factory=list)
    is_val: list[bool] = field(default_factory=list)

    def add(self, q: Query, mu: float, val: bool) -> None:
        self.a.append(q.a.x), self.b.append(q.b.x), self.mu.append(mu), self.is_val.append(val)

    def split(self) -> tuple[PairData, PairData | None]:
        mask = np.asarray(self.is_val)
        data = PairData(torch.as_tensor(np.stack(self.a)), torch.as_tensor(np.stack(self.b)),
                        torch.as_tensor(self.mu, dtype=torch.float32))
        if mask.all() or not mask.any():
            return data, None
        return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))


@dataclass
class Learner:
    """State the loop's steps share."""

    cfg: ControlConfig
    info: SpaceInfo
    ensemble: RewardEnsemble
    labeler: Labeler
    rng: np.random.Generator
    data: Dataset = field(default_factory=Dataset)
    recent: list[Trajectory] = field(default_factory=list)
    schedule: list[int] = field(default_factory=list)  # comparisons to ask at round 0 .. rounds
    asked: int = 0
    can_terminate: bool = False

    def remember(self, trajs: list[Trajectory]) -> None:
        self.recent = (self.recent + trajs)[-self.cfg.recent_episodes:]
        self.can_terminate |= any(t.terminated for t in trajs)

    def ask(self, n: int) -> None:
        qs = select_queries(self.cfg.query, n, self.info, self.recent, self.cfg.segment_length, self.ensemble,
                            self.rng, self.cfg.pool_factor, first_id=self.asked)
        self.asked += len(qs)
        self.labeler.request(qs)

    def absorb_answers(self, wait: bool) -> int:
        got = self.labeler.answers(wait=wait)
        for q, mu in got:
            self.data.add(q, mu, val=bool(self.rng.random() < self.cfg.val_fraction))
        return len(got)

    def refit(self) -> dict[str, float]:
        """Fit the ensemble on every label so far and renormalize over recent steps."""
        if not self.data.mu:
            return {}
        train, val = self.data.split()
        metrics = self.ensemble.fit(train, val, steps=self.cfg.reward_steps)
        segs = sample_segments(self.info, self.recent, 64, self.cfg.segment_length, self.rng)
        x = np.concatenate([s.x[s.x[:, -1] == 0] for s in segs])  # visited (non-absorbing) steps
        self.ensemble.normalize(x, absorbing_features(self.info) if self.can_terminate else None)
        return metrics

    def reward_fn(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        from rlhfkit.control.envs import features

        return self.ensemble(features(self.info, obs, actions))


def reward_correlation(learner: Learner, trajs: list[Trajectory], n: int = 200) -> float:
    """Pearson correlation of predicted and true segment returns on fresh segments."""
    segs = sample_segments(learner.info, trajs, n, learner.cfg.segment_length, np.random.default_rng(12345))
    pred = learner.ensemble.member_returns(np.stack([s.x for s in segs])).mean(0).numpy()
    true = np.asarray([s.true_return for s in segs])
    if pred.std() < 1e-9 or true.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def make_labeler(cfg: ControlConfig, out_dir: str | None) -> Labeler:
    from rlhfkit.control.labelers import SyntheticLabeler

    if cfg.labeler == "synthetic":
        return SyntheticLabeler(beta=cfg.labeler_beta, error=cfg.labeler_error, seed=cfg.seed + 1)
    if cfg.labeler == "web":
        from rlhfkit.control.web import WebLabeler

        return WebLabeler.from_config(cfg, out_dir)
    from rlhfkit.errors import UserError

    raise UserError(f"--labeler {cfg.labeler!r}: use synthetic or web")


def _first_round(cfg: ControlConfig, learner: Learner) -> None:
    """Round 0: comparisons about random-policy episodes, before the agent trains."""
    learner.remember(random_rollouts(make_env(cfg.env), cfg.initial_random_steps, cfg.seed + 7))
    learner.ask(learner.schedule[0])
    learner.absorb_answers(wait=True)
    learner.refit()


def _round(i: int, learner: Learner, agent, rec: EpisodeRecorder, eval_env, per_round: int,
           metrics: MetricsLogger | None) -> dict:
    """Round i >= 1: the agent learns, new comparisons are asked and fitted, the policy is evaluated."""
    cfg = learner.cfg
    agent.learn(per_round, reset_num_timesteps=False)
    learner.remember(rec.pop_episodes())
    learner.ask(learner.schedule[i])
    learner.absorb_answers(wait=cfg.labeler != "synthetic" and learner.labeler.pending() > 0)
    m = learner.refit()
    agent_lib.relabel(agent, learner.info, learner.ensemble)
    ret = agent_lib.evaluate(agent, eval_env, cfg.eval_episodes, seed=10_000 + cfg.seed * 100)
    point = {"comparisons": len(learner.data.mu), "env_steps": rec.total_steps + cfg.initial_random_steps,
             "true_return_mean": float(ret.mean()), "true_return_std": float(ret.std())}
    log.info("round %d: %d comparisons, true return %.1f", i, point["comparisons"], ret.mean())
    if metrics is not None:
        metrics.log({**{f"train/{k}": v for k, v in m.items()}, **{f"eval/{k}": v for k, v in point.items()}},
                    step=point["env_steps"])
    return point


def train_preference_rl(cfg: ControlConfig, labeler: Labeler, metrics: MetricsLogger | None = None,
                        run_dir: str | Path | None = None) -> dict:
    """Run the loop; returns the agent, the learner and the curve of true return vs comparisons.
    With `run_dir`, a checkpoint is written after every round (`control/checkpoint.py`), and
    with `cfg.resume` the run continues after the newest one found there."""
    torch.set_num_threads(1)
    env = make_env(cfg.env)
    info = space_info(env, cfg.env)
    algo = agent_lib.pick_algo(cfg.algo, info)
    timesteps = cfg.timesteps or agent_lib.DEFAULT_TIMESTEPS[algo]
    ens = RewardEnsemble(info.feature_dim, cfg.ensemble, cfg.hidden, cfg.reward_lr, cfg.l2, cfg.noise, cfg.seed)
    learner = Learner(cfg, info, ens, labeler, np.random.default_rng(cfg.seed),
                      schedule=comparison_schedule(cfg.comparisons, cfg.rounds, cfg.schedule_decay))
    eval_env = make_env(cfg.env)
    rec = EpisodeRecorder(env, seed=cfg.seed + 11, reward_fn=learner.reward_fn)
    ckpt = ckpt_lib.latest_round(run_dir) if cfg.resume and run_dir is not None else None
    t0 = time.time()
    if ckpt is None:
        if cfg.resume:
            log.info("--resume: no checkpoint in %s, starting from the beginning", run_dir)
        if run_dir is not None:
            ckpt_lib.clear(run_dir)
        _first_round(cfg, learner)
        agent = agent_lib.make_agent(algo, rec, cfg.seed)
        first, curve, spent = 1, [], 0.0
        if run_dir is not None:
            ckpt_lib.save_round(run_dir, 0, learner, agent, rec, curve, time.time() - t0)
    else:
        state = ckpt_lib.load_round(ckpt, learner)
        ckpt_lib.restore_recorder(rec, state)
        agent = ckpt_lib.load_agent(ckpt, algo, rec)
        first, curve, spent = state["round"] + 1, list(state["curve"]), float(state["elapsed_s"])
    per_round = int(np.ceil(timesteps / cfg.rounds))
    for i in progress(range(first, cfg.rounds + 1), desc="preference RL"):
        curve.append(_round(i, learner, agent, rec, eval_env, per_round, metrics))
        if run_dir is not None:
            ckpt_lib.save_round(run_dir, i, learner, agent, rec, curve, spent + time.time() - t0)
    # Answers that came in after the last refit still count as asked-for comparisons.
    final = agent_lib.evaluate(agent, eval_env, max(cfg.eval_episodes, 20), seed=20_000 + cfg.seed * 100)
    held_out = random_rollouts(make_env(cfg.env), 2000, cfg.seed + 99) + learner.recent
    return {"agent": agent, "learner": learner, "curve": curve, "final_returns": final, "algo": algo,
            "timesteps": timesteps, "env_steps": rec.total_steps + cfg.initial_random_steps,
            "reward_correlation": reward_correlation(learner, held_out), "wall_s": spent + time.time() - t0}


def train_true_reward(cfg: ControlConfig, algo: str, env_steps: int) -> dict:
    """The reference line: the same agent, same env steps, trained on the true reward."""
    torch.set_num_threads(1)
    env = make_env(cfg.env)
    agent = agent_lib.make_agent(algo, env, cfg.seed)
    t0 = time.time()
    agent.learn(env_steps)
    final = agent_lib.evaluate(agent, make_env(cfg.env), max(cfg.eval_episodes, 20), seed=20_000 + cfg.seed * 100)
    return {"final_returns": final, "wall_s": time.time() - t0}
