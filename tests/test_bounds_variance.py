"""The variance-adaptive bound: Fan–Grama–Liu inequality, worked terms, monotonicity and validity."""
import math

import numpy as np
import pytest

from tokenbound.bounds.variance import (DEFAULT_LAMBDA_GRID, check_lambda_grid, fan_grama_liu_sides, log_penalty,
                                        occam_bits, penalized_losses, psi)
from tokenbound.errors import TokenboundError


def test_fan_grama_liu_inequality_on_a_fine_grid():
    # exp(λy − ψ(λ)y²) <= 1 + λy for every y >= −1, λ ∈ [0, 1); equality at y = −1 and y = 0.
    y = np.linspace(-1.0, 6.0, 1401)[:, None]
    lam = np.linspace(0.0, 0.999, 1000)[None, :]
    lhs, rhs = fan_grama_liu_sides(y, lam)
    assert (lhs <= rhs * (1 + 1e-12) + 1e-15).all()
    lhs, rhs = fan_grama_liu_sides(np.array([-1.0]), np.array([0.7]))
    assert lhs[0] == pytest.approx(rhs[0], rel=1e-12)  # = 1 − λ = 0.3
    # and it genuinely fails below −1 (so the y >= −1 requirement matters):
    lhs, rhs = fan_grama_liu_sides(np.array([-1.5]), np.array([0.5]))
    assert lhs[0] > rhs[0]


def test_psi_values():
    # ψ(0.5) = ln 2 − 0.5 = 0.1931472; ψ(λ) ≈ λ²/2 for small λ.
    assert psi(0.5) == pytest.approx(math.log(2) - 0.5, rel=1e-12)
    assert psi(1e-4) == pytest.approx(0.5e-8, rel=1e-3)
    assert psi(0.0) == 0.0


def test_log_penalty_values_and_fgl_domination():
    # φ_λ(y) = λy − ln(1 + λy): φ_0.5(−1) = ψ(0.5) = ln 2 − 0.5; φ_0.5(0.4) = 0.2 − ln 1.2 = 0.0176784.
    assert log_penalty(-1.0, 0.5) == pytest.approx(math.log(2) - 0.5, rel=1e-12)
    assert log_penalty(0.4, 0.5) == pytest.approx(0.2 - math.log(1.2), rel=1e-12)
    assert log_penalty(0.0, 0.9) == 0.0
    # never looser than the Fan–Grama–Liu form ψ(λ)y² on y >= −1, and below λ²y²/2 for y > 0
    y = np.linspace(-1.0, 3.0, 801)[:, None]
    lam = np.linspace(0.01, 0.99, 99)[None, :]
    pen = log_penalty(y, lam)
    assert (pen >= -1e-15).all() and (pen <= psi(lam) * y * y + 1e-12).all()
    assert (pen[y[:, 0] > 0] <= (lam * lam * y * y / 2)[y[:, 0] > 0] + 1e-15).all()


def test_occam_worked_example():
    # Δ = 2, L = 0 bits, δ1 = 0.05 (ln 20 = 2.9957323), m = 100, λ = 0.5: 2·2.9957323/(0.5·100) = 0.1198293.
    assert occam_bits(np.array([2.0]), 0.0, 0.05, 100, np.array([0.5]))[0, 0] == pytest.approx(0.1198293, rel=1e-6)


def test_penalized_losses_worked_example():
    # Δ = 4, ĉ = 3, ℓ = 5 ⇒ y = −0.5; λ = 0.5: φ = −0.25 − ln 0.75 = 0.0376821; z = 5 + (4/0.5)·0.0376821.
    z = penalized_losses(np.array([[5.0, 3.0]]), np.array([[3.0, 3.0]]), np.array([4.0]), 0.5)
    assert z[0, 0] == pytest.approx(5.0 + 8.0 * (-0.25 - math.log(0.75)), rel=1e-12)
    assert z[0, 1] == 3.0  # on the centre: no penalty
    # α = 1 (Δ = 0): the loss is constant, no penalty
    assert penalized_losses(np.array([[13.0]]), np.array([[13.0]]), np.array([0.0]), 0.5)[0, 0] == 13.0


def test_monotone_in_message_delta_and_m():
    lam = np.array(DEFAULT_LAMBDA_GRID)

    def best(bits, delta, m):
        return float(occam_bits(np.array([10.0]), bits, delta, m, lam).min())

    assert best(0, 0.05, 1e6) < best(1e3, 0.05, 1e6) < best(1e5, 0.05, 1e6)
    assert best(100, 0.1, 1e6) < best(100, 0.01, 1e6) < best(100, 1e-6, 1e6)
    assert best(100, 0.05, 1e4) > best(100, 0.05, 1e6) > best(100, 0.05, 1e9)


def test_bad_lambda_grid():
    for grid in ([], [0.0], [1.0], [float("nan")]):
        with pytest.raises(TokenboundError, match="lambda_grid"):
            check_lambda_grid(grid)


def test_bound_covers_on_simulated_markov_source_with_miscalibrated_centre():
    # Two-state Markov source; the model predicts `pred` (wrong), so the centre ĉ_i = the model's entropy
    # is NOT the conditional mean μ_i. The bound (L = 0, union over the λ grid) must fail in <= δ of trials.
    rng = np.random.default_rng(5)
    trials, m, delta = 4000, 300, 0.1
    trans = np.array([[0.95, 0.05], [0.4, 0.6]])
    pred = np.array([[0.7, 0.3], [0.5, 0.5]])
    loss = -np.log2(pred)
    lo, hi = loss.min(), loss.max()
    rng_bits = hi - lo
    centre = np.clip((-pred * np.log2(pred)).sum(axis=1), lo, hi)  # predictable: depends on prev only
    lam = np.array(DEFAULT_LAMBDA_GRID)
    state = np.zeros(trials, dtype=int)
    emp = np.zeros(trials)
    cond = np.zeros(trials)
    pen_sum = np.zeros((trials, len(lam)))  # Σ_i (Δ/λ)·φ_λ(y_i)
    for _ in range(m):
        nxt = (rng.random(trials) < trans[state, 1]).astype(int)
        ell = loss[state, nxt]
        emp += ell
        pen_sum += rng_bits / lam[None, :] * log_penalty(((centre[state] - ell) / rng_bits)[:, None], lam[None, :])
        cond += (trans[state] * loss[state]).sum(axis=1)
        state = nxt
    occam = occam_bits(np.array([rng_bits]), math.log2(len(lam)), delta, m, lam)[0]     # [K]
    bound = emp / m + (occam[None, :] + pen_sum / m).min(axis=1)
    assert np.mean(cond / m > bound) <= delta
    # The simulation is sharp enough to catch an invalid bound: without the penalty (λ = 0.9) it fails
    # far more often than δ (about 25% of trials here).
    occam_only = occam_bits(np.array([rng_bits]), 0.0, delta, m, np.array([0.9]))[0, 0]
    assert np.mean(cond / m > emp / m + occam_only) > 2 * delta
