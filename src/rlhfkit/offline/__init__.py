"""Offline RL as sequence modelling (Chen et al. 2021, Decision Transformer; Liu et al. 2023,
Constrained Decision Transformer) on datasets built here: `envs` (cost wrappers, recorder,
behaviour settings), `collect` (D4RL-style mixtures and their Minari export), `dataset`
(episodes, mixtures on disk, return- and cost-to-go, normalized scores).
"""
