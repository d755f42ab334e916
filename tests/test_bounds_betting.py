"""The betting confidence bound (Waudby-Smith & Ramdas 2024): validity by simulation, tightness, edge cases."""
import numpy as np
import pytest

from tokenbound.bounds.betting import betting_upper, predictable_bets
from tokenbound.bounds.subsampling import hoeffding_width, maurer_pontil_width, upper_mean


def test_bets_are_predictable():
    rng = np.random.default_rng(0)
    z = rng.random(50)
    lam = predictable_bets(z, 0.05)
    z2 = z.copy()
    z2[30:] = rng.random(20)  # changing draws from 30 on may not change bets 0..30
    assert np.array_equal(predictable_bets(z2, 0.05)[:31], lam[:31])
    assert (lam > 0).all() and (lam < 1).all()


def test_upper_bound_is_above_the_mean_and_below_one():
    z = np.array([0.2, 0.3, 0.25, 0.35, 0.3] * 20)
    u = float(betting_upper(z, 0.05))
    assert z.mean() < u < 1.0
    assert float(betting_upper(np.ones(10), 0.05)) == pytest.approx(1.0)


def test_coverage_by_simulation():
    """Over 2000 samples of Beta draws the bound fails at most at rate δ (plus sampling noise)."""
    rng = np.random.default_rng(1)
    delta, trials, n = 0.1, 2000, 60
    a, b = 2.0, 12.0  # mean 1/7, small variance
    z = rng.beta(a, b, size=(trials, n))
    u = betting_upper(z, delta)
    failures = int((u < a / (a + b)).sum())
    # binomial(2000, 0.1) exceeds 240 with probability < 1e-3
    assert failures <= 240


def test_much_tighter_than_empirical_bernstein_for_small_variance():
    rng = np.random.default_rng(2)
    z = np.clip(rng.normal(0.3, 0.01, size=400), 0, 1)
    delta = 0.01
    width_bet = float(betting_upper(z, delta)) - z.mean()
    width_mp = float(maurer_pontil_width(z, delta))
    width_h = float(hoeffding_width(1.0, z.size, delta))
    # bounded bets keep a ln(1/δ)/n term, but it is far below Maurer–Pontil's 7 ln(2/δ)/(3(n−1))
    assert width_bet < 0.6 * width_mp and width_bet < 0.25 * width_h


def test_upper_mean_betting_rescales_the_range():
    z = np.array([[3.0, 3.5, 4.0, 3.2] * 10])
    mean, up = upper_mean(z, np.array([0.0]), np.array([10.0]), 0.05, "betting")
    assert mean[0] == pytest.approx(z.mean()) and z.mean() < up[0] <= 10.0
