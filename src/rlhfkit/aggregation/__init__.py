"""Preference aggregation over a few items: Bradley-Terry scores, Condorcet/Copeland/Borda winners,
and dueling bandits that choose which pair to ask about next."""

from rlhfkit.aggregation.bradley_terry import (
    AggregationError,
    BTResult,
    PairCounts,
    counts_from_comparisons,
    fit_bradley_terry,
)
from rlhfkit.aggregation.winners import Winners, preference_matrix, winners, winners_from_counts

__all__ = ["AggregationError", "BTResult", "PairCounts", "counts_from_comparisons", "fit_bradley_terry",
           "Winners", "preference_matrix", "winners", "winners_from_counts"]
