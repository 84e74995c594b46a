"""Confidence intervals, shared by evaluation, tasks and benchmarks (no torch: a task may import it).

- `mean_ci`: a mean with its 95% normal-approximation interval over independent draws;
- `wilson_interval`: a proportion's interval that stays inside [0, 1] at small n;
- `ratio_interval`: a ratio over clusters (instructions grouped in prompts), clustered variance;
- `paired_delta`: the difference of two matched proportions (two methods on the same prompts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.96  # the two-sided 95% normal quantile


def mean_ci(xs: Sequence[float]) -> tuple[float, list[float]]:
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / max(1, n - 1))
    h = Z95 * sd / math.sqrt(n)
    return m, [m - h, m + h]


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (Wilson 1927); unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage at small n and at k = 0 or n
    (Brown, Cai & DasGupta 2001, "Interval Estimation for a Binomial Proportion")."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


def ratio_interval(met: Sequence[int], asked: Sequence[int], z: float = Z95) -> tuple[float, tuple[float, float]]:
    """R = sum(met) / sum(asked) over clusters (prompts), with a 95% interval that treats prompts,
    not instructions, as the independent draws: the linearized (Taylor) variance of a ratio
    estimator, Var(R) = n / (n - 1) * sum_i (met_i - R asked_i)^2 / (sum_i asked_i)^2 (Cochran
    1977, "Sampling Techniques", sec. 6.4, with the usual n / (n - 1) small-sample factor, CR1).
    Instructions of one prompt succeed or fail together more than independent ones would, so a
    binomial interval over all instructions would be too narrow. With every residual zero (all
    followed, or none) the interval is the point; with one prompt it is [0, 1]."""
    n, total = len(met), sum(asked)
    if n == 0 or total == 0 or len(asked) != n:
        raise ValueError("ratio_interval needs as many met as asked counts, and some asked")
    r = sum(met) / total
    if n == 1:
        return r, (0.0, 1.0)
    var = n / (n - 1) * sum((m - r * a) ** 2 for m, a in zip(met, asked)) / total ** 2
    h = z * math.sqrt(var)
    return r, (max(0.0, r - h), min(1.0, r + h))


def paired_delta(base_ok: Sequence[bool], method_ok: Sequence[bool], z: float = Z95) -> tuple[float, float, float]:
    """(delta, lo, hi): the method's prompt-level accuracy minus the base's on the same prompts,
    with a 95% interval from the per-prompt differences d_i = method_i - base_i in {-1, 0, 1}:
    mean(d) +- z * sd(d) / sqrt(n), sd with n - 1. This is the Wald interval for the difference of
    two matched proportions (Agresti 2013, "Categorical Data Analysis", sec. 11.1) with the sample
    variance; pairing removes the prompt-to-prompt variation both share, so it is much narrower
    than two independent intervals. Clipped to [-1, 1]."""
    if len(base_ok) != len(method_ok) or not base_ok:
        raise ValueError("paired_delta needs two equally long, non-empty lists of outcomes on the same prompts")
    d = [float(m) - float(b) for b, m in zip(base_ok, method_ok)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / max(1, n - 1))
    h = z * sd / math.sqrt(n)
    return mean, max(-1.0, mean - h), min(1.0, mean + h)
