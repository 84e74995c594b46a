"""Gridworlds: the lectures' 4x4 penguin world and N x N worlds with random feature rewards.

Penguin world (Prince, *Understanding Deep Learning*, ch. 19, as shown in the DS598 RLHF deck):
16 squares numbered 1..16 row by row (our state index = square - 1). The Markov process
moves with equal probability in each allowed direction (2 at a corner, 3 on an edge, 4
inside), which is exactly the deck's transition matrix. The deck's reward trajectory
tau = [1,0, 2,0, 6,0, 10,0, 9,1, 10,0, 11,1, 15,0] pays r_{t+1} = 1 on leaving squares 9
and 11, so those hold the fish. The deck's text does not say where the holes are; we put
them on squares 7 and 13 (never visited by that trajectory), reward -1, as a choice of ours.
In the MDP the penguin moves in the intended direction with probability 1/2 and the ice
slips it to another allowed neighbour otherwise (UDL fig. 19.4). The POMDP observes only
the 3x3 box around the penguin (what is on each square: wall, ice, fish, hole).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import MDP, POMDP, MarkovProcess, MarkovRewardProcess, MDPError

ACTIONS = ("up", "right", "down", "left")
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
PENGUIN_FISH = (9, 11)  # squares, 1-based, as in the lecture
PENGUIN_HOLES = (7, 13)  # squares, 1-based: our choice (the deck's text does not place them)


def _neighbours(n: int, s: int) -> list[int | None]:
    """The square reached by each of up/right/down/left from s, None where a wall is."""
    r, c = divmod(s, n)
    out: list[int | None] = []
    for dr, dc in _MOVES:
        rr, cc = r + dr, c + dc
        out.append(rr * n + cc if 0 <= rr < n and 0 <= cc < n else None)
    return out


def random_walk_matrix(n: int = 4) -> np.ndarray:
    """P[s, s'] of a walk that moves to each allowed neighbour with equal probability."""
    P = np.zeros((n * n, n * n))
    for s in range(n * n):
        nbrs = [x for x in _neighbours(n, s) if x is not None]
        P[s, nbrs] = 1.0 / len(nbrs)
    return P


def slippery_transitions(n: int = 4, intended: float = 0.5) -> np.ndarray:
    """P[s, a, s']: the intended move with probability `intended`, the rest split evenly over the
    other allowed moves; an action into a wall is treated as 'any allowed move, equally'."""
    S = n * n
    P = np.zeros((S, 4, S))
    for s in range(S):
        nbrs = _neighbours(n, s)
        allowed = [x for x in nbrs if x is not None]
        for a, target in enumerate(nbrs):
            if target is None:
                P[s, a, allowed] = 1.0 / len(allowed)
                continue
            others = [x for x in allowed if x != target]
            P[s, a, target] = intended
            P[s, a, others] += (1.0 - intended) / len(others)
    return P


def penguin_rewards(fish: tuple[int, ...] = PENGUIN_FISH, holes: tuple[int, ...] = PENGUIN_HOLES,
                    fish_reward: float = 1.0, hole_reward: float = -1.0) -> np.ndarray:
    R = np.zeros(16)
    for sq in fish:
        R[sq - 1] = fish_reward
    for sq in holes:
        R[sq - 1] = hole_reward
    return R


def penguin_process() -> MarkovProcess:
    """The lecture's Markov process (penguin starts on square 1)."""
    start = np.zeros(16)
    start[0] = 1.0
    return MarkovProcess(random_walk_matrix(4), start)


def penguin_reward_process(gamma: float = 0.9) -> MarkovRewardProcess:
    start = np.zeros(16)
    start[0] = 1.0
    return MarkovRewardProcess(random_walk_matrix(4), start, R=penguin_rewards(), gamma=gamma)


def penguin_mdp(gamma: float = 0.9, intended: float = 0.5) -> MDP:
    """The slippery penguin MDP: actions up/right/down/left, state reward on leaving a square,
    one-hot state features (so inverse RL can recover any state reward)."""
    start = np.zeros(16)
    start[0] = 1.0
    return MDP(slippery_transitions(4, intended), penguin_rewards(), gamma, start, features=np.eye(16))


def penguin_pomdp(gamma: float = 0.9) -> POMDP:
    """The penguin sees only the 3x3 box around it: each square is wall/ice/fish/hole.
    Observation ids number the distinct boxes in order of first appearance over states."""
    mdp = penguin_mdp(gamma)
    fish = {sq - 1 for sq in PENGUIN_FISH}
    holes = {sq - 1 for sq in PENGUIN_HOLES}
    boxes: list[str] = []
    obs_of_state: list[int] = []
    for s in range(16):
        r, c = divmod(s, 4)
        cells = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < 4 and 0 <= cc < 4):
                    cells.append("#")
                else:
                    x = rr * 4 + cc
                    cells.append("F" if x in fish else "H" if x in holes else ".")
        box = "".join(cells)
        if box not in boxes:
            boxes.append(box)
        obs_of_state.append(boxes.index(box))
    O = np.zeros((16, len(boxes)))
    O[np.arange(16), obs_of_state] = 1.0
    return POMDP(mdp, O, tuple(boxes))


@dataclass(frozen=True)
class GridTask:
    """An N x N gridworld with a linear true reward r(s) = features[s] . true_weights."""

    mdp: MDP  # R holds the true reward
    true_weights: np.ndarray  # (F,)
    horizon: int
    size: int


def grid_transitions(n: int, slip: float = 0.1) -> np.ndarray:
    """P[s, a, s'] with actions up/right/down/left/stay: the chosen move with probability
    1 - slip, otherwise a uniformly random one of the five; moves into a wall stay put."""
    S = n * n
    P = np.zeros((S, 5, S))
    for s in range(S):
        targets = [x if x is not None else s for x in _neighbours(n, s)] + [s]
        for a in range(5):
            P[s, a, targets[a]] += 1.0 - slip
            for b in range(5):
                P[s, a, targets[b]] += slip / 5
    return P


def random_feature_gridworld(n: int, n_features: int, seed: int = 0, slip: float = 0.1, gamma: float = 0.99,
                             horizon: int | None = None) -> GridTask:
    """Each square gets one of `n_features` colours at random (a one-hot feature vector); the true
    reward weighs the colours with w ~ N(0, 1). The start distribution is uniform; the default
    horizon is T = 4N (long enough to cross the grid twice) with gamma = 0.99."""
    if n < 2 or n_features < 1:
        raise MDPError(f"gridworld: need n >= 2 and n_features >= 1, got n={n}, n_features={n_features}")
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, n_features, size=n * n)
    colours[: n_features] = np.arange(n_features)  # every feature appears at least once
    rng.shuffle(colours)
    phi = np.eye(n_features)[colours]  # (S, F)
    w = rng.normal(size=n_features)
    mdp = MDP(grid_transitions(n, slip), phi @ w, gamma, None, phi)
    return GridTask(mdp, w, horizon if horizon is not None else 4 * n, n)


def parse_env(name: str, seed: int = 0, n_features: int = 4) -> GridTask:
    """`gridworld-5x5`, `gridworld-10x10`, ... or `penguin` (one-hot state features, T = 16)."""
    if name == "penguin":
        mdp = penguin_mdp()
        return GridTask(mdp, mdp.R.copy(), 16, 4)
    if name.startswith("gridworld-"):
        dims = name[len("gridworld-"):].split("x")
        if len(dims) == 2 and dims[0].isdigit() and dims[0] == dims[1]:
            return random_feature_gridworld(int(dims[0]), n_features, seed=seed)
    raise MDPError(f"unknown env {name!r}: use gridworld-NxN (e.g. gridworld-5x5) or penguin")
