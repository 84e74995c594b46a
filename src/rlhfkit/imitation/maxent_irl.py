"""Maximum-entropy inverse RL (Ziebart et al. 2008), exact on tabular MDPs with known dynamics.

The lecture's loop (CS234 lecture 8):
  1. input: expert demonstrations D
  2. initialize r_phi (linear in the features, or a small MLP)
  3. compute the soft-optimal policy for r_phi by soft value iteration
     pi_t(a|s) = exp(Q_t(s,a) - V_t(s)), V_t = log sum_a exp Q_t   (the soft V, never the hard max)
  4. compute the state-visitation frequencies p(s | phi, T) with the known dynamics
  5. gradient = expert feature counts - expected feature counts
  6. one gradient step on phi; go to 3.
Over a finite horizon T with stochastic dynamics and time-dependent soft policies this is the
maximum-causal-entropy form (Ziebart 2010), whose log-likelihood is concave in linear weights
with exactly the gradient of step 5. Counts are discounted by the MDP's gamma.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rlhfkit.logging import get_logger
from rlhfkit.tabular.demos import empirical_visitation
from rlhfkit.tabular.mdp import MDP, MDPError, Trajectory
from rlhfkit.tabular.planning import finite_horizon, visitation_frequencies


@dataclass
class MaxEntConfig:
    """Optimizer settings for `maxent_irl`."""

    reward_model: Literal["linear", "mlp"] = "linear"
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"  # linear model: L-BFGS on the concave objective, or Adam
    lr: float = 0.1  # Adam step size
    max_iter: int = 1000
    tol: float = 1e-6  # stop when ||expert counts - expected counts||_1 < tol * ||expert counts||_1
    l2: float = 0.1  # precision of a N(0, 1/l2) prior on the weights against the demos' summed
    # log-likelihood (so the per-demonstration objective uses l2 / n_demos); the MLE of a
    # deterministic expert is at infinity without one
    hidden: int = 32  # MLP width
    seed: int = 0


@dataclass
class IRLResult:
    """The recovered reward and the soft policy it induces, with the per-iteration feature gap."""

    reward: np.ndarray  # (S,)
    weights: np.ndarray | None  # (F,) for the linear model
    policy: np.ndarray  # (T, S, A) soft-optimal policy for `reward`
    iterations: int
    converged: bool
    feature_gap: list[float] = field(default_factory=list)  # ||mu_E - mu(pi_r)||_2 per iteration


class _Adam:
    """Adam (Kingma & Ba 2015) for gradient ascent on a numpy vector."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def ascent(self, grad: np.ndarray) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(grad), np.zeros_like(grad)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad**2
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def soft_policy_and_visits(mdp: MDP, reward: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4: the soft-optimal policy (T, S, A) and its discounted visitation frequencies (S,)."""
    plan = finite_horizon(mdp, horizon, reward=reward, soft=True)
    return plan.policy, visitation_frequencies(mdp, plan.policy, horizon)


def maxent_irl(mdp: MDP, demos: list[Trajectory], horizon: int, cfg: MaxEntConfig | None = None,
               on_iter=None) -> IRLResult:
    """Recover a reward from `demos` on `mdp` (its features; its own reward is never read)."""
    cfg = cfg or MaxEntConfig()
    if mdp.features is None:
        raise MDPError("maxent_irl: the MDP needs state features")
    if not demos:
        raise MDPError("maxent_irl: no demonstrations")
    phi = mdp.features  # (S, F)
    d_expert = empirical_visitation(mdp, demos, horizon)  # (S,)
    mu_expert = d_expert @ phi  # (F,)
    if cfg.reward_model == "mlp":
        return _maxent_mlp(mdp, d_expert, mu_expert, horizon, cfg, cfg.l2 / len(demos), on_iter)
    l2 = cfg.l2 / len(demos)  # MAP: the prior weighs against the total, not the mean, log-likelihood
    if cfg.optimizer == "adam":
        w, it, converged, gaps = _ascend_adam(mdp, mu_expert, horizon, cfg, l2, on_iter)
    else:
        w, it, converged, gaps = _ascend_lbfgs(mdp, mu_expert, horizon, cfg, l2, on_iter)
    policy, _ = soft_policy_and_visits(mdp, phi @ w, horizon)
    get_logger(__name__).debug("maxent_irl: %d iterations, gap %.3g", it, gaps[-1])
    return IRLResult(phi @ w, w, policy, it, converged, gaps)


def dual_objective(mdp: MDP, w: np.ndarray, mu_expert: np.ndarray, horizon: int, l2: float = 0.0
                   ) -> tuple[float, np.ndarray, float]:
    """The concave MaxEnt objective L(w) = w . mu_E - E_{s0}[V_0^soft(s0)] - l2/2 ||w||^2, its gradient
    mu_E - mu(pi_w) - l2 w (dV_0/dr = discounted soft-policy visitation), and the feature gap.
    With gamma = 1 it is the demonstrations' log-likelihood per trajectory, up to the dynamics' terms."""
    phi = mdp.features
    plan = finite_horizon(mdp, horizon, reward=phi @ w, soft=True)
    mu = visitation_frequencies(mdp, plan.policy, horizon) @ phi  # (F,)
    value = float(w @ mu_expert - mdp.start @ plan.V[0] - 0.5 * l2 * w @ w)
    return value, mu_expert - mu - l2 * w, float(np.linalg.norm(mu_expert - mu))


def _ascend_adam(mdp, mu_expert, horizon, cfg, l2, on_iter):
    w = np.zeros(mdp.features.shape[1])
    opt = _Adam(cfg.lr)
    gaps: list[float] = []
    scale = max(np.abs(mu_expert).sum(), 1e-12)
    for it in range(1, cfg.max_iter + 1):
        _, grad, gap = dual_objective(mdp, w, mu_expert, horizon, l2)
        gaps.append(gap)
        if on_iter is not None:
            on_iter(it, {"feature_gap": gap})
        if np.abs(grad).sum() < cfg.tol * scale:
            return w, it, True, gaps
        w = w + opt.ascent(grad)  # step 6
    return w, cfg.max_iter, False, gaps


def _ascend_lbfgs(mdp, mu_expert, horizon, cfg, l2, on_iter, memory: int = 10):
    """L-BFGS ascent (Nocedal & Wright, Algorithm 7.4) with a backtracking Armijo line search."""
    w = np.zeros(mdp.features.shape[1])
    f, g, gap = dual_objective(mdp, w, mu_expert, horizon, l2)
    hist: list[tuple[np.ndarray, np.ndarray]] = []
    gaps = [gap]
    scale = max(np.abs(mu_expert).sum(), 1e-12)
    for it in range(1, cfg.max_iter + 1):
        if on_iter is not None:
            on_iter(it, {"feature_gap": gaps[-1]})
        if np.abs(g).sum() < cfg.tol * scale:
            return w, it, True, gaps
        direction = _two_loop(g, hist)
        step, slope = 1.0, float(g @ direction)
        if slope <= 0:  # not an ascent direction: restart from the gradient
            hist.clear()
            direction, slope = g.copy(), float(g @ g)
        while True:
            w_new = w + step * direction
            f_new, g_new, gap_new = dual_objective(mdp, w_new, mu_expert, horizon, l2)
            if f_new >= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_vec, y_vec = w_new - w, g - g_new  # y = -(change in the gradient of the concave f)
        if s_vec @ y_vec > 1e-12:
            hist.append((s_vec, y_vec))
            hist[:] = hist[-memory:]
        w, f, g = w_new, f_new, g_new
        gaps.append(gap_new)
    return w, cfg.max_iter, False, gaps


def _two_loop(g: np.ndarray, hist: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The L-BFGS two-loop recursion: an approximation of (-Hessian)^-1 g for the concave objective."""
    q = g.copy()
    alphas = []
    for s_vec, y_vec in reversed(hist):
        a = (s_vec @ q) / (y_vec @ s_vec)
        alphas.append(a)
        q -= a * y_vec
    if hist:
        s_vec, y_vec = hist[-1]
        q *= (s_vec @ y_vec) / (y_vec @ y_vec)
    for (s_vec, y_vec), a in zip(hist, reversed(alphas)):
        b = (y_vec @ q) / (y_vec @ s_vec)
        q += (a - b) * s_vec
    return q


def _maxent_mlp(mdp: MDP, d_expert: np.ndarray, mu_expert: np.ndarray, horizon: int, cfg: MaxEntConfig,
                l2: float, on_iter) -> IRLResult:
    """r_phi(s) = MLP(features[s]); dJ/dr(s) = expert visits(s) - expected visits(s) (Wulfmeier et al.
    2015, deep MaxEnt IRL), back-propagated into the network."""
    import torch

    torch.manual_seed(cfg.seed)
    phi = torch.as_tensor(mdp.features, dtype=torch.float64)  # (S, F)
    net = torch.nn.Sequential(torch.nn.Linear(phi.shape[1], cfg.hidden), torch.nn.Tanh(),
                              torch.nn.Linear(cfg.hidden, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=l2)
    gaps: list[float] = []
    scale = max(np.abs(mu_expert).sum(), 1e-12)
    converged = False
    for it in range(1, cfg.max_iter + 1):
        r = net(phi).squeeze(-1)  # (S,)
        _, d = soft_policy_and_visits(mdp, r.detach().numpy(), horizon)
        gaps.append(float(np.linalg.norm(mu_expert - d @ mdp.features)))
        if on_iter is not None:
            on_iter(it, {"feature_gap": gaps[-1]})
        if np.abs(mu_expert - d @ mdp.features).sum() < cfg.tol * scale:
            converged = True
            break
        opt.zero_grad()
        # ascent on the log-likelihood: minimize -(d_E - d) . r
        (-(torch.as_tensor(d_expert - d) * r).sum()).backward()
        opt.step()
    with torch.no_grad():
        reward = net(phi).squeeze(-1).numpy().copy()
    policy, _ = soft_policy_and_visits(mdp, reward, horizon)
    return IRLResult(reward, None, policy, it, converged, gaps)
