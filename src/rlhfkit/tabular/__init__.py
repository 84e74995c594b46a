"""Tabular Markov processes, MDPs and POMDPs, exact planning, and gridworlds (the lectures' penguin world)."""

from rlhfkit.tabular.gridworld import (
    GridTask,
    parse_env,
    penguin_mdp,
    penguin_pomdp,
    penguin_process,
    penguin_reward_process,
    random_feature_gridworld,
    random_walk_matrix,
)
from rlhfkit.tabular.mdp import MDP, POMDP, MarkovProcess, MarkovRewardProcess, MDPError, Trajectory
from rlhfkit.tabular.planning import (
    Plan,
    expected_return,
    feature_expectations,
    finite_horizon,
    policy_evaluation,
    soft_value_iteration,
    state_visitation,
    uniform_policy,
    value_iteration,
    visitation_frequencies,
)

__all__ = [
    "MDP", "POMDP", "MarkovProcess", "MarkovRewardProcess", "MDPError", "Trajectory", "Plan", "GridTask",
    "expected_return", "feature_expectations", "finite_horizon", "policy_evaluation", "soft_value_iteration",
    "state_visitation", "uniform_policy", "value_iteration", "visitation_frequencies", "parse_env",
    "penguin_mdp", "penguin_pomdp", "penguin_process", "penguin_reward_process", "random_feature_gridworld",
    "random_walk_matrix",
]
