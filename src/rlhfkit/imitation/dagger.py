"""DAgger: Dataset Aggregation (Ross, Gordon & Bagnell 2011, Algorithm 3.1).

    D <- {}
    for i = 1..N:
        pi_i = beta_i pi* + (1 - beta_i) pi_hat_i         (per-step mixture)
        roll out pi_i; the expert labels every visited state: D_i = {(s, pi*(s))}
        D <- D u D_i
        pi_hat_{i+1} <- train a classifier (here: `train_bc`) on D

Behaviour cloning trains only on the expert's own states, so the learner's small
mistakes take it to states it has never seen and errors compound (O(T^2 eps)).
DAgger labels the states the *learner* visits, which makes the loss no-regret
and the error linear in T (Ross et al. 2011, Theorem 3.1).

Budget accounting: every state the expert labels counts, the initial expert
demonstrations included; `expert_transitions` in the result is that count.
The schedule is beta_1 = 1 (round 1 is the expert alone, i.e. plain BC data) and
beta_i = p^(i-1) afterwards, the paper's geometric schedule; p = 0 gives the
"pure learner after the first round" variant the paper found to work best.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.imitation.bc import BCConfig, NeuralPolicy, Policy, collect_demos, evaluate_policy, make_env, train_bc
from rlhfkit.logging import get_logger, progress

log = get_logger(__name__)


@dataclass
class DAggerConfig:
    """DAgger rounds, mixing schedule and the expert-label budget."""

    budget: int = F(1000, "total expert-labelled transitions, initial demonstrations included")
    rounds: int = F(5, "rounds (the first uses the expert alone); the budget is split evenly")
    beta_decay: float = F(0.5, "beta_i = beta_decay^(i-1) for rounds i >= 2; round 1 has beta = 1")
    eval_episodes: int = F(5, "greedy episodes to score the learner after each round (0: skip)")
    bc: BCConfig = F(BCConfig(), "the classifier retrained from scratch on the aggregate each round")


def beta_schedule(rounds: int, decay: float) -> list[float]:
    """[1, p, p^2, ...]: the probability of executing the expert's action in each round."""
    if rounds < 1:
        raise UserError(f"DAgger needs at least 1 round, got {rounds}")
    if not 0.0 <= decay <= 1.0:
        raise UserError(f"beta_decay must lie in [0, 1], got {decay}")
    return [1.0] + [decay ** i for i in range(1, rounds)]


class MixturePolicy:
    """pi = beta pi* + (1 - beta) pi_hat, drawn independently at every step."""

    def __init__(self, expert: Policy, learner: Policy | None, beta: float, rng: np.random.Generator) -> None:
        self.expert, self.learner, self.beta, self.rng = expert, learner, beta, rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.learner is None or self.rng.random() < self.beta:
            return self.expert.act(obs)
        return self.learner.act(obs)


@dataclass
class DAggerResult:
    policy: NeuralPolicy
    obs: np.ndarray  # (N, D) every labelled state
    actions: np.ndarray  # (N,) the expert's labels
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def expert_transitions(self) -> int:
        return int(len(self.actions))


def _visit_and_label(env_id: str, behaviour: Policy, expert: Policy, n: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Roll out `behaviour` for `n` steps (episode after episode); the expert labels each state."""
    obs, _ = collect_demos(behaviour, env_id, n, seed)
    return obs, expert.act(obs)  # (n, D), (n,)


def _split_budget(budget: int, rounds: int, initial: int | None) -> list[int]:
    """Labels per round, as even as possible; `initial` demonstrations fill round 1."""
    if initial is None:
        return [budget // rounds + (1 if i < budget % rounds else 0) for i in range(rounds)]
    rest = budget - initial
    if rest < rounds - 1:
        raise UserError(f"{initial} initial demonstrations leave too few of the {budget} labels for {rounds} rounds")
    return [initial] + _split_budget(rest, rounds - 1, None) if rounds > 1 else [initial]


def dagger(expert: Policy, env_id: str, cfg: DAggerConfig | None = None, seed: int = 0,
           initial: tuple[np.ndarray, np.ndarray] | None = None,
           on_round: Callable[[int, dict[str, float]], None] | None = None) -> DAggerResult:
    """Run DAgger with at most `cfg.budget` expert labels; returns the last learner.

    `initial` (obs, actions) replaces round 1's expert rollouts when given."""
    cfg = cfg or DAggerConfig()
    if cfg.budget < cfg.rounds:
        raise UserError(f"a budget of {cfg.budget} labels cannot cover {cfg.rounds} rounds")
    probe = make_env(env_id)
    n_actions = int(probe.action_space.n)
    probe.close()
    betas = beta_schedule(cfg.rounds, cfg.beta_decay)
    per_round = _split_budget(cfg.budget, cfg.rounds, None if initial is None else len(initial[1]))
    rng = np.random.default_rng(seed)
    data_obs: list[np.ndarray] = []
    data_act: list[np.ndarray] = []
    learner: NeuralPolicy | None = None
    history: list[dict[str, float]] = []
    for i in progress(range(cfg.rounds), desc="dagger"):
        if i == 0 and initial is not None:
            o, a = np.asarray(initial[0], dtype=np.float32), np.asarray(initial[1], dtype=np.int64)
        else:
            behaviour = MixturePolicy(expert, learner, betas[i], rng)
            o, a = _visit_and_label(env_id, behaviour, expert, per_round[i], seed=seed * 100_003 + 1000 * i)
        data_obs.append(o)
        data_act.append(a)
        all_obs, all_act = np.concatenate(data_obs), np.concatenate(data_act)
        learner, fit = train_bc(all_obs, all_act, n_actions, cfg.bc, seed=seed * 7919 + i)
        row = {"round": i + 1, "beta": betas[i], "expert_transitions": len(all_act), "train/nll": fit["nll"],
               "train/accuracy": fit["accuracy"]}
        if cfg.eval_episodes:
            row["eval/return_mean"] = float(evaluate_policy(learner, env_id, cfg.eval_episodes,
                                                            seed=50_000 + seed * 1000 + 10 * i).mean())
        log.info("dagger round %d: %s", i + 1, {k: round(v, 3) for k, v in row.items()})
        history.append(row)
        if on_round is not None:
            on_round(i + 1, row)
    assert learner is not None
    return DAggerResult(learner, np.concatenate(data_obs), np.concatenate(data_act), history)
