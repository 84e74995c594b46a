"""The over-optimization analysis of the quickstart report: the peak of the gold score along a
KL sweep, and the fit of Gao et al.'s form for RL, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from rlhfkit.report import gao_curve, gao_rl_fit, overoptimization_point, plot_sweep


def _pt(beta, kl, gold, proxy):
    return {"beta": beta, "kl": kl, "gold": gold, "proxy": proxy}


def test_fit_recovers_the_form_it_was_made_from():
    # gold(d) = 0.2 + d (1.0 - 0.5 log d): at d = 1, 2, 4, 8 (KL = d^2)
    sweep = [_pt(None, d * d, 0.2 + d * (1.0 - 0.5 * math.log(d)), 0.0) for d in (1.0, 2.0, 4.0, 8.0)]
    assert sweep[1]["gold"] == pytest.approx(0.2 + 2 - math.log(2))  # 1.5069, by hand
    fit = gao_rl_fit(sweep, gold0=0.2)
    assert fit["alpha"] == pytest.approx(1.0) and fit["beta"] == pytest.approx(0.5) and fit["r2"] == pytest.approx(1.0)
    # the peak: alpha - beta (log d + 1) = 0 -> d* = e, KL* = e^2 = 7.389, gold* = 0.2 + 0.5 e = 1.559
    assert fit["kl_peak"] == pytest.approx(math.e ** 2) and fit["gold_peak"] == pytest.approx(0.2 + 0.5 * math.e)
    assert gao_curve(fit, math.e) == pytest.approx(fit["gold_peak"]) and gao_curve(fit, 0.0) == 0.2


def test_fit_by_least_squares_on_noisy_points():
    # two points only, y = alpha d - beta d log d solved exactly: d = 1 -> alpha = 0.7;
    # d = e -> e (0.7 - beta) = 0.1 e -> beta = 0.6
    fit = gao_rl_fit([_pt(0.1, 1.0, 1.7, 0), _pt(0.0, math.e ** 2, 1.0 + 0.1 * math.e, 0)], gold0=1.0)
    assert (fit["alpha"], fit["beta"]) == (pytest.approx(0.7), pytest.approx(0.6))
    # a point at KL 0 carries no information (d = 0 gives 0 = 0) and is left out; too few points: None
    assert gao_rl_fit([_pt(1, 0.0, 1.0, 0), _pt(0.1, 1.0, 1.7, 0)], gold0=1.0) is None


def test_overoptimization_point_peak_drop_and_interior():
    sweep = [_pt(0.2, 2.0, 2.2, 2.6), _pt(0.05, 3.0, 2.3, 2.9), _pt(0.01, 20.0, 1.8, 3.3), _pt(0.0, 200.0, 0.6, 3.7)]
    point = overoptimization_point(sweep)
    assert point == {"kl": 3.0, "beta": 0.05, "gold": 2.3, "interior": True, "drop": pytest.approx(1.7)}
    # gold rises all along: no point; the peak at the smallest KL is not interior
    assert overoptimization_point([_pt(0.2, 2.0, 1.0, 1.0), _pt(0.0, 9.0, 2.0, 2.0)]) is None
    edge = overoptimization_point([_pt(0.2, 2.0, 2.0, 1.0), _pt(0.0, 9.0, 1.0, 2.0)])
    assert edge["interior"] is False and edge["drop"] == pytest.approx(1.0)


def test_sweep_plot_draws_the_fit(tmp_path):
    sweep = [_pt(None, d * d, 0.2 + d * (1.0 - 0.5 * math.log(d)), d) for d in (1.0, 2.0, 4.0, 8.0)]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 0, "rollout/gold": 0.2, "rollout/kl": 0.0, "rollout/score": 0.1}\n')
    out = plot_sweep(sweep, {0.0: metrics}, tmp_path / "sweep.png", gao_rl_fit(sweep, 0.2))
    assert out.stat().st_size > 1000
