"""Imitation learning: behaviour cloning, DAgger, TAMER (Gymnasium) and, on tabular MDPs with known
dynamics, apprenticeship learning by feature matching and maximum-entropy inverse RL.

Submodules are imported on use (`from rlhfkit.imitation.maxent_irl import maxent_irl`), so that
importing this package does not pull in Gymnasium or torch.
"""
