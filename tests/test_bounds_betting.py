"""The betting confidence bound (Waudby-Smith & Ramdas 2024): validity by simulation, tightness, edge cases."""
import numpy as np
import pytest

from tokenbound.bounds.betting import MAX_BET, betting_upper, control_variate_draws, predictable_bets
from tokenbound.bounds.subsampling import ControlVariate, draw_means, hoeffding_width, maurer_pontil_width, upper_mean


def test_bets_are_predictable():
    rng = np.random.default_rng(0)
    z = rng.random(50)
    lam = predictable_bets(z, 0.05)
    z2 = z.copy()
    z2[30:] = rng.random(20)  # changing draws from 30 on may not change bets 0..30
    assert np.array_equal(predictable_bets(z2, 0.05)[:31], lam[:31])
    assert (lam > 0).all() and np.isfinite(lam).all()


def _log_capital(z, delta, m, hi=1.0):
    lam = predictable_bets(z, delta)
    room = hi - m
    bet = np.minimum(lam, MAX_BET / room) if room > 0 else lam
    return np.cumsum(np.log1p(bet * (m - z)))


def test_capital_is_monotone_in_the_candidate_and_factors_stay_positive():
    # The bisection is only right if the rejected set is an up-set: every factor non-decreasing in m.
    rng = np.random.default_rng(3)
    z = rng.beta(1, 6, size=200)
    ms = np.linspace(0.0, 0.999, 400)
    caps = np.array([_log_capital(z, 0.05, m) for m in ms])     # [M, n]
    assert np.isfinite(caps).all()                                # every factor > 0
    steps = np.diff(caps, axis=1, prepend=0.0)                    # log of each factor
    assert (np.diff(steps, axis=0) >= -1e-12).all()
    assert (steps > np.log(1 - MAX_BET) - 1e-12).all()


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


def test_skewed_population_coverage():
    """Rare high draws are what a bet sized by the room above the candidate must survive: 97% of the mass at
    0.05 and 3% at 1 (mean 0.0785), n = 40 — often no high draw at all. Failures stay below δ."""
    rng = np.random.default_rng(4)
    delta, trials, n = 0.1, 4000, 40
    z = np.where(rng.random((trials, n)) < 0.03, 1.0, 0.05)
    u = betting_upper(z, delta)
    failures = int((u < 0.03 + 0.97 * 0.05).sum())
    assert failures <= 460  # binomial(4000, 0.1) exceeds 460 with probability < 1e-3


def _population(rng, size=5000):
    g = rng.gamma(16.0, 0.4, size)                     # e.g. a bigram model's window loss: 6.4 ± 1.6 bits
    z = np.clip(0.9 * g + rng.normal(0, 0.4, size) + 2.0, 0.0, 16.0)
    return z, g


def test_control_variate_coverage_and_gain():
    rng = np.random.default_rng(6)
    z_pop, g_pop = _population(rng)
    mu, g_mean, g_lo, g_hi = z_pop.mean(), g_pop.mean(), g_pop.min(), g_pop.max()
    delta, trials, n = 0.1, 1000, 1000
    idx = rng.integers(0, z_pop.size, size=(trials, n))
    failures, widths_cv, widths = 0, [], []
    for t in range(trials):
        z, g = z_pop[idx[t]], g_pop[idx[t]]
        _, up_cv = upper_mean(z[None], 0.0, 16.0, delta, "betting", control=ControlVariate(g, g_mean, g_lo, g_hi))
        _, up = upper_mean(z[None], 0.0, 16.0, delta, "betting")
        failures += int(up_cv[0] < mu)
        widths_cv.append(up_cv[0] - z.mean())
        widths.append(up[0] - z.mean())
    assert failures <= 136  # binomial(1000, 0.1) exceeds 136 with probability < 1e-3
    # z's spread is 2.7 bits, the residual's 0.4: the width falls until the ln(1/δ)/n floor (which the control
    # raises: Z's upper limit is higher than z's) takes over
    assert np.mean(widths_cv) < 0.6 * np.mean(widths)


def test_control_variate_draws_are_predictable_and_within_limits():
    rng = np.random.default_rng(7)
    z_pop, g_pop = _population(rng, 800)
    values, limits, beta = control_variate_draws(z_pop, g_pop, g_pop.mean(), g_pop.min(), g_pop.max(), 16.0)
    assert (values <= limits + 1e-12).all() and beta[0] == beta[1] == 0.0
    assert 0.6 < beta[-1] < 1.2  # the population slope is 0.9
    g2 = g_pop.copy()
    g2[500:] = g_pop.min()  # later draws (still inside the declared range) may not change earlier coefficients
    _, _, beta2 = control_variate_draws(z_pop, g2, g_pop.mean(), g_pop.min(), g_pop.max(), 16.0)
    assert np.array_equal(beta2[:501], beta[:501])
    with pytest.raises(ValueError, match="betting"):
        upper_mean(z_pop[None], 0.0, 16.0, 0.1, "hoeffding", control=ControlVariate(g_pop, 0, 0, 1))


def test_pilot_forecast_of_the_betting_radius():
    """The pilot's forecast (used only to choose α and λ) lands within 40 % of the radius later certified."""
    rng = np.random.default_rng(8)
    for sd, n in ((0.5, 3000), (2.0, 1000), (0.1, 2000)):
        z = np.clip(rng.normal(8.0, sd, size=n + n // 10), 0.0, 16.0)
        pilot_mean, pilot_up = upper_mean(z[None, : n // 10], 0.0, 16.0, 0.01, "betting", forecast_draws=n)
        forecast = pilot_up[0] - pilot_mean[0]
        mean, up = upper_mean(z[None, n // 10:], 0.0, 16.0, 0.01, "betting")
        assert 0.6 < forecast / (up[0] - mean[0]) < 1.4


def test_a_draw_outside_its_range_raises_instead_of_being_clipped():
    from tokenbound.bounds.betting import RANGE_RTOL
    from tokenbound.errors import TokenboundError

    z = np.array([0.2, 0.4, 1.0 + 1e-6, 0.3])  # 1e-6 above the declared upper end: the range is wrong
    with pytest.raises(TokenboundError, match=r"draws: value 1\.000001 at index \(2,\) is above its upper limit"):
        betting_upper(z, 0.05)
    with pytest.raises(TokenboundError, match="below its lower limit"):
        betting_upper(np.array([0.2, -1e-6, 0.3]), 0.05)
    with pytest.raises(TokenboundError, match="draws"):
        upper_mean(np.array([[3.0, 10.5]]), 0.0, 10.0, 0.05, "betting")
    # within the rounding slack the draw counts as the limit: the bound moves only by the order of the slack
    at = np.array([0.2, 0.4, 1.0, 0.3])
    noisy = at.copy()
    noisy[2] += 0.5 * RANGE_RTOL
    assert float(betting_upper(noisy, 0.05)) == pytest.approx(float(betting_upper(at, 0.05)), rel=RANGE_RTOL)


def test_window_means_of_losses_exactly_at_the_limit_pass_the_check():
    # every loss at L_max = log2(V/α) for V = 50257, α = 1e-4: a mean over a window of 4096 such values must not
    # be mistaken for an out-of-range draw (float rounding of the sum), and the bound is the limit itself
    from tokenbound.bounds.smoothing import loss_range_bits

    _, l_max, _ = loss_range_bits(np.array([1e-4]), 50257)
    draw = np.repeat(np.arange(3), [4096, 1000, 7])
    means = draw_means(np.full((1, draw.size), l_max[0]) * np.ones(draw.size), draw, 3)
    assert float(upper_mean(means, 0.0, l_max, 0.05, "betting")[1][0]) == pytest.approx(l_max[0], rel=1e-12)


def test_control_variate_outside_its_declared_range_raises():
    from tokenbound.errors import TokenboundError

    rng = np.random.default_rng(9)
    z_pop, g_pop = _population(rng, 200)
    with pytest.raises(TokenboundError, match="control variate: value .* below its lower limit"):
        control_variate_draws(z_pop, g_pop, g_pop.mean(), g_pop.min() + 0.5, g_pop.max(), 16.0)
    with pytest.raises(TokenboundError, match="draws: value .* above its upper limit 10.0"):
        control_variate_draws(z_pop, g_pop, g_pop.mean(), g_pop.min(), g_pop.max(), 10.0)  # z reaches 11.26
