"""Subsampling confidence bounds: Hoeffding (with replacement) and Maurer–Pontil empirical Bernstein."""

import numpy as np
import pytest

from tokenbound.bounds.subsampling import draw_means, hoeffding_width, maurer_pontil_width, upper_mean


def test_hoeffding_worked_example():
    # w = 2 bits, n = 50, δ = 0.05: 2·sqrt(ln 20 / 100) = 2·sqrt(0.02995732) = 2·0.1730818 = 0.3461636.
    assert hoeffding_width(2.0, 50, 0.05) == pytest.approx(0.3461636, rel=1e-6)


def test_maurer_pontil_worked_example():
    # y = [0, 1, 0, 1], n = 4, δ = 0.1: V_n (unbiased) = 1/3, ln(2/δ) = ln 20 = 2.9957323;
    # sqrt(2·(1/3)·2.9957323/4) = sqrt(0.4992887) = 0.7066036; 7·2.9957323/(3·3) = 2.3300140; sum 3.0366176.
    assert maurer_pontil_width(np.array([0.0, 1.0, 0.0, 1.0]), 0.1) == pytest.approx(3.0366176, rel=1e-7)
    assert maurer_pontil_width(np.array([0.5]), 0.1) == np.inf  # needs n >= 2


def test_draw_means_group_block_windows():
    # Two windows (draws 0 and 1) of the block sampler: means are 2 and 10.
    values = np.array([[1.0, 3.0, 10.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(draw_means(values, np.array([0, 0, 1]), 2), [[2.0, 10.0], [0.0, 1.0]])


def test_upper_mean_never_exceeds_the_trivial_bound_and_best_pays_half_delta():
    rng = np.random.default_rng(3)
    # mean 0.7 + Hoeffding radius sqrt(ln 20 / 4) = 0.865 would pass 1: clipped to the trivial bound
    _, up = upper_mean(np.array([[0.6, 0.8]]), 0.0, 1.0, 0.05, "hoeffding")
    assert up[0] == 1.0
    z = rng.beta(1, 30, size=(1, 2000)) * 10.0  # low variance in [0, 10]
    mean, best = upper_mean(z, 0.0, 10.0, 0.05, "best")
    _, mp_half = upper_mean(z, 0.0, 10.0, 0.025, "maurer_pontil")
    _, h_half = upper_mean(z, 0.0, 10.0, 0.025, "hoeffding")
    _, mp_full = upper_mean(z, 0.0, 10.0, 0.05, "maurer_pontil")
    assert best[0] == pytest.approx(min(mp_half[0], h_half[0]), rel=1e-14)
    assert mp_full[0] < best[0]  # the choice is paid for with half of δ
    assert mp_half[0] < h_half[0]  # low variance: empirical Bernstein wins


@pytest.mark.parametrize("method", ["hoeffding", "maurer_pontil", "best"])
def test_coverage_on_skewed_distribution(method):
    # Bernoulli(0.05) draws, n = 60: the upper bound must be below the true mean in <= δ of trials.
    rng = np.random.default_rng(11)
    z = (rng.random((20000, 60)) < 0.05).astype(float)
    _, up = upper_mean(z, np.zeros(20000), np.ones(20000), 0.1, method)
    assert np.mean(up < 0.05) <= 0.1


def test_monotone_in_delta_and_n():
    assert hoeffding_width(1.0, 100, 0.01) > hoeffding_width(1.0, 100, 0.1)
    assert hoeffding_width(1.0, 1000, 0.1) < hoeffding_width(1.0, 100, 0.1)
    y = np.tile([0.2, 0.8], 50)
    assert maurer_pontil_width(y, 0.01) > maurer_pontil_width(y, 0.1)
    assert maurer_pontil_width(np.tile([0.2, 0.8], 500), 0.1) < maurer_pontil_width(y, 0.1)
