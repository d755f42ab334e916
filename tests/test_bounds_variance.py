"""The variance-adaptive bound: Fan–Grama–Liu inequality, worked terms, monotonicity and validity."""
import math

import numpy as np
import pytest

from tokenbound.bounds.variance import (DEFAULT_LAMBDA_GRID, check_lambda_grid, fan_grama_liu_sides, psi,
                                        variance_adaptive_terms_bits)
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


def test_terms_worked_example():
    # Δ = 2, L = 0 bits, δ1 = 0.05 (ln 20 = 2.9957323), m = 100, λ = 0.5, v = 0.5 bits²:
    # occam = 2·2.9957323/(0.5·100) = 0.1198293; variance = ψ(0.5)·0.5/(0.5·2) = 0.1931472·0.5 = 0.0965736.
    occam, var = variance_adaptive_terms_bits(np.array([0.5]), np.array([2.0]), 0.0, 0.05, 100, np.array([0.5]))
    assert occam[0, 0] == pytest.approx(0.1198293, rel=1e-6)
    assert var[0, 0] == pytest.approx(0.0965736, rel=1e-6)


def test_alpha_one_tiny_vocab_has_no_terms():
    # α = 1 ⇒ Δ = 0: the loss is the constant log2 V, nothing to bound.
    occam, var = variance_adaptive_terms_bits(np.array([0.0]), np.array([0.0]), 50.0, 0.05, 10, np.array([0.5]))
    assert occam[0, 0] == 0.0 and var[0, 0] == 0.0


def test_monotone_in_message_delta_and_m():
    lam = np.array(DEFAULT_LAMBDA_GRID)

    def best(bits, delta, m):
        o, v = variance_adaptive_terms_bits(np.array([1.0]), np.array([10.0]), bits, delta, m, lam)
        return float((o + v).min())

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
    sq = np.zeros(trials)
    for _ in range(m):
        nxt = (rng.random(trials) < trans[state, 1]).astype(int)
        ell = loss[state, nxt]
        emp += ell
        sq += (ell - centre[state]) ** 2
        cond += (trans[state] * loss[state]).sum(axis=1)
        state = nxt
    occam, var = variance_adaptive_terms_bits(sq / m, np.full(trials, rng_bits), math.log2(len(lam)), delta, m, lam)
    bound = emp / m + (occam + var).min(axis=1)
    assert np.mean(cond / m > bound) <= delta
    # The simulation is sharp enough to catch an invalid bound: without the ψ-variance term (λ = 0.9) it fails
    # far more often than δ (about 25% of trials here).
    occam_only, _ = variance_adaptive_terms_bits(sq / m, np.full(trials, rng_bits), 0.0, delta, m, np.array([0.9]))
    assert np.mean(cond / m > emp / m + occam_only[:, 0]) > 2 * delta
