"""Behaviour cloning: supervised learning of pi(a|s) from an expert's (state, action) pairs.

BC maximizes sum_i log pi(a_i | s_i) over the demonstrations (Pomerleau 1989; the
lecture's "imitation as supervised learning"). Two policy classes:

- `bc_tabular`: the maximum-likelihood policy of a finite MDP, pi(a|s) proportional to
  count(s, a) + alpha (Laplace smoothing; states never demonstrated stay uniform).
- `train_bc`: a neural policy for continuous observations (Gymnasium envs).

Why the neural defaults look the way they do. From 25 transitions (half a second
of CartPole near the upright start) many boundaries fit the labels, and an
unregularized network may pick one that leans on a feature that barely varies in
the data (the cart position, in our runs); once the learner drifts, that feature
dominates and errors compound (Ross & Bagnell 2010: O(T^2 eps)). The defaults, the
same for every task, seed and data size:

1. inputs standardized by the demonstrations' mean and std (std floored, so a
   near-constant feature is not blown up), so one prior treats every feature alike;
2. MAP estimation under a unit Gaussian prior on the weights (`prior_precision`=1):
   the prior's share of the mean loss is 1/N, strong for 25 transitions and
   negligible for thousands (MacKay 1992; Bishop, PRML sec. 5.5);
3. an ensemble of independently initialized networks whose action probabilities
   are averaged (Lakshminarayanan et al. 2017), which cancels much of the
   seed-to-seed variance of any one network's boundary away from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rlhfkit.config import F
from rlhfkit.errors import UserError
from rlhfkit.ops.logprobs import mixture_logprobs, response_logprobs
from rlhfkit.ops.losses import sft_nll


class Policy(Protocol):
    """Maps a batch of observations (B, D) to discrete actions (B,)."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class DemoError(UserError, ValueError):
    """Demonstrations with a wrong shape, an action out of range, or too few of them."""


# ---------------------------------------------------------------- environments

@dataclass(frozen=True)
class Trajectory:
    """One episode: obs[t] is the state in which actions[t] was taken and rewards[t] received."""

    obs: np.ndarray  # (T, D)
    actions: np.ndarray  # (T,)
    rewards: np.ndarray  # (T,)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())

    def __len__(self) -> int:
        return len(self.actions)


def make_env(env_id: str) -> Any:
    import gymnasium as gym

    try:
        return gym.make(env_id)
    except Exception as e:  # gymnasium raises several error types for unknown / missing envs
        raise UserError(f"cannot make environment {env_id!r}: {e}") from e


def rollout(env: str | Any, policy: Policy, seed: int, max_steps: int | None = None) -> Trajectory:
    """Run `policy` greedily for one episode (until termination or the env's time limit)."""
    owned = isinstance(env, str)
    env = make_env(env) if owned else env
    obs, _ = env.reset(seed=seed)
    states, actions, rewards = [], [], []
    done = False
    while not done and (max_steps is None or len(actions) < max_steps):
        a = int(policy.act(np.asarray(obs)[None])[0])
        states.append(np.asarray(obs, dtype=np.float32))
        obs, r, terminated, truncated, _ = env.step(a)
        actions.append(a)
        rewards.append(float(r))
        done = terminated or truncated
    if owned:
        env.close()
    return Trajectory(np.stack(states), np.asarray(actions, dtype=np.int64), np.asarray(rewards, dtype=np.float64))


def collect_demos(expert: Policy, env_id: str, n_transitions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_transitions` (state, expert action) pairs of the expert's episodes,
    episode after episode (seeds seed, seed+1, ...), as `imitation` counts transitions."""
    if n_transitions < 1:
        raise DemoError(f"--demos must be at least 1 transition, got {n_transitions}")
    obs, acts, n, ep = [], [], 0, 0
    env = make_env(env_id)
    while n < n_transitions:
        traj = rollout(env, expert, seed=seed + ep, max_steps=n_transitions - n)
        obs.append(traj.obs)
        acts.append(traj.actions)
        n += len(traj)
        ep += 1
    env.close()
    return np.concatenate(obs), np.concatenate(acts)  # (N, D), (N,)


def evaluate_policy(policy: Policy, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` greedy episodes from reset seeds seed, seed+1, ..."""
    env = make_env(env_id)
    returns = np.asarray([rollout(env, policy, seed=seed + i).ret for i in range(episodes)])
    env.close()
    return returns


# ---------------------------------------------------------------- tabular BC

@dataclass(frozen=True)
class TabularPolicy:
    """pi(a|s) as an (S, A) table; acts greedily (ties to the lowest action)."""

    probs: np.ndarray  # (S, A)

    def act(self, states: np.ndarray) -> np.ndarray:
        return self.probs[np.asarray(states, dtype=np.int64).reshape(-1)].argmax(-1)  # (B,)


def bc_tabular(states: np.ndarray, actions: np.ndarray, n_states: int, n_actions: int,
               alpha: float = 0.0) -> TabularPolicy:
    """Maximum-likelihood tabular policy: pi(a|s) = (count(s,a) + alpha) / (count(s) + A alpha).

    States never demonstrated get the uniform policy (there is no evidence about them)."""
    states = np.asarray(states, dtype=np.int64).reshape(-1)
    actions = np.asarray(actions, dtype=np.int64).reshape(-1)
    if states.shape != actions.shape:
        raise DemoError(f"states {states.shape} and actions {actions.shape} differ in length")
    if len(states) and (states.min() < 0 or states.max() >= n_states):
        raise DemoError(f"a state is outside [0, {n_states})")
    if len(actions) and (actions.min() < 0 or actions.max() >= n_actions):
        raise DemoError(f"an action is outside [0, {n_actions})")
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (states, actions), 1.0)
    counts += alpha
    totals = counts.sum(1, keepdims=True)  # (S, 1)
    probs = np.where(totals > 0, counts / np.maximum(totals, 1e-300), 1.0 / n_actions)
    return TabularPolicy(probs)


# ---------------------------------------------------------------- neural BC

@dataclass
class BCConfig:
    """Neural behaviour cloning (the defaults are the same for every task and seed)."""

    hidden: list[int] = F([64, 64], "hidden layer widths of each MLP (tanh activations)")
    ensemble: int = F(5, "independently initialized MLPs whose action log-probs are averaged")
    prior_precision: float = F(1.0, "Gaussian prior N(0, 1/precision) on the weights: adds precision/(2N) ||W||^2 to the mean NLL")
    weight_decay: float = F(0.0, "extra decoupled weight decay (AdamW); the prior above already regularizes")
    lr: float = F(3e-3, "AdamW learning rate")
    steps: int = F(600, "gradient steps (full batch up to batch_size transitions)")
    batch_size: int = F(512, "minibatch size; smaller data sets train full-batch")
    min_std: float = F(0.05, "floor on each feature's std when standardizing inputs")
    input_noise: float = F(0.0, "std of Gaussian noise added to standardized inputs while training (Bishop 1995)")
    bootstrap: bool = F(False, "train each member on a bootstrap resample of the demonstrations (bagging)")
    activation: str = F("tanh", "hidden activation: tanh or relu")
    input_lasso: float = F(0.0, "group-lasso strength on each input's first-layer weights (drops unneeded features)")


class EnsembleMLP(nn.Module):
    """M MLPs evaluated at once with stacked weights; inputs standardized by buffers."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], members: int,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.act_fn = {"tanh": torch.tanh, "relu": torch.relu}[activation]
        self.input_noise = 0.0
        sizes = [obs_dim, *hidden, n_actions]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            w = torch.empty(members, fan_in, fan_out)
            for m in range(members):
                nn.init.kaiming_uniform_(w[m].T, a=5 ** 0.5)  # nn.Linear's default init, per member
            bound = 1.0 / fan_in ** 0.5
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def member_logits(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (M, B, A) logits of every member."""
        h = ((obs - self.mean) / self.std).unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)  # (M, B, D)
        if self.training and self.input_noise > 0:
            h = h + self.input_noise * torch.randn_like(h)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (M, B, width)
            if i < len(self.weights) - 1:
                h = self.act_fn(h)
        return h

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, A): log of the ensemble's mean action probability."""
        return mixture_logprobs(self.member_logits(obs))  # (M, B, A) -> (B, A)


class NeuralPolicy:
    """A trained ensemble acting greedily; `save`/`load` round-trip it."""

    def __init__(self, net: EnsembleMLP, cfg: BCConfig) -> None:
        self.net = net.eval()
        self.cfg = cfg

    @torch.no_grad()
    def action_logprobs(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)  # (B, D)
        return self.net(x).numpy()  # (B, A)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action_logprobs(obs).argmax(-1)  # (B,)

    def save(self, path: str | Path) -> None:
        from rlhfkit.runtime import atomic_path

        meta = {"obs_dim": self.net.mean.shape[0], "n_actions": self.net.weights[-1].shape[-1],
                "cfg": vars(self.cfg)}
        with atomic_path(Path(path)) as tmp:
            torch.save({"meta": meta, "state": self.net.state_dict()}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "NeuralPolicy":
        blob = torch.load(path, map_location="cpu", weights_only=True)
        cfg = BCConfig(**blob["meta"]["cfg"])
        net = EnsembleMLP(blob["meta"]["obs_dim"], blob["meta"]["n_actions"], cfg.hidden, cfg.ensemble, cfg.activation)
        net.load_state_dict(blob["state"])
        return cls(net, cfg)


def _check_demos(obs: np.ndarray, actions: np.ndarray, n_actions: int) -> None:
    if obs.ndim != 2:
        raise DemoError(f"observations must be (N, D), got shape {obs.shape}")
    if actions.shape != (obs.shape[0],):
        raise DemoError(f"actions must be (N,) = ({obs.shape[0]},), got shape {actions.shape}")
    if obs.shape[0] < 1:
        raise DemoError("no demonstrations to clone")
    if actions.min() < 0 or actions.max() >= n_actions:
        raise DemoError(f"an action is outside [0, {n_actions})")
    if not np.isfinite(obs).all():
        raise DemoError("observations hold NaN or inf")


def bc_loss(net: EnsembleMLP, obs: torch.Tensor, actions: torch.Tensor, counts: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over members of each member's mean NLL -log pi_m(a|s): members train independently.

    `counts` (M, B) weights each example per member (bootstrap resampling counts)."""
    logits = net.member_logits(obs)  # (M, B, A)
    targets = actions.unsqueeze(0).expand(logits.shape[0], -1)  # (M, B)
    logp = response_logprobs(logits, targets)  # (M, B)
    weights = torch.ones_like(logp) if counts is None else counts.to(logp.dtype)  # (M, B)
    out = sft_nll(logp, weights, reduction="mean")
    acc = (logits.argmax(-1) == targets).float().mean().item()
    return out.loss * logits.shape[0], {"nll": out.metrics["nll"], "accuracy": acc}


def gaussian_prior_penalty(net: EnsembleMLP, precision: float, n: int) -> torch.Tensor:
    """-log N(W; 0, I / precision) / n up to a constant: precision / (2 n) * sum ||W||^2.

    BC's loss is the *mean* NLL, so MAP estimation divides the prior by the number of
    demonstrations n: strong with 25 transitions, negligible with thousands (biases unpenalized)."""
    return precision / (2 * n) * sum((w ** 2).sum() for w in net.weights)


@torch.no_grad()
def _group_soft_threshold(w: torch.Tensor, tau: float) -> None:
    """Proximal step of tau * sum_(m, i) ||w[m, i, :]||_2: shrinks each input's outgoing weights
    as a group and zeroes those of inputs the data does not need (Yuan & Lin 2006)."""
    norms = w.norm(dim=-1, keepdim=True)  # (M, D, 1)
    w.mul_((1 - tau / norms.clamp_min(1e-12)).clamp_min(0.0))


def train_bc(obs: np.ndarray, actions: np.ndarray, n_actions: int, cfg: BCConfig | None = None,
             seed: int = 0) -> tuple[NeuralPolicy, dict[str, float]]:
    """Fit the ensemble by maximum likelihood with an L2 penalty; returns (policy, final metrics)."""
    cfg = cfg or BCConfig()
    obs = np.asarray(obs, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.int64)
    _check_demos(obs, actions, n_actions)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = EnsembleMLP(obs.shape[1], n_actions, list(cfg.hidden), cfg.ensemble, cfg.activation)
    net.input_noise = cfg.input_noise
    x = torch.as_tensor(obs)  # (N, D)
    y = torch.as_tensor(actions)  # (N,)
    net.mean.copy_(x.mean(0))
    net.std.copy_(x.std(0, unbiased=False).clamp_min(cfg.min_std) if len(x) > 1 else torch.ones(x.shape[1]))
    counts = None
    if cfg.bootstrap:  # bagging: each member sees its own resample of the data (Breiman 1996)
        draws = torch.randint(len(x), (cfg.ensemble, len(x)), generator=gen)  # (M, N)
        counts = torch.zeros(cfg.ensemble, len(x)).scatter_add_(1, draws, torch.ones(cfg.ensemble, len(x)))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    metrics: dict[str, float] = {}
    net.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen) if len(x) > cfg.batch_size else slice(None)
        loss, metrics = bc_loss(net, x[idx], y[idx], None if counts is None else counts[:, idx])
        if cfg.prior_precision > 0:
            loss = loss + gaussian_prior_penalty(net, cfg.prior_precision, len(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.input_lasso > 0:
            _group_soft_threshold(net.weights[0], cfg.lr * cfg.input_lasso)
    return NeuralPolicy(net, cfg), metrics
