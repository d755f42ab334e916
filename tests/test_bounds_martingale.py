"""Theorem A (token-level Azuma–Hoeffding) and its Hoeffding subsampling term."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tokenbound.bounds.martingale import azuma_bound_from_draws, azuma_complexity_bits


def test_worked_example():
    # Δ = log2 5 = 2.321928, L = 10 bits, δ1 = 0.025, m = 100:
    # (10·ln 2 + ln 40)/(2·100) = (6.931472 + 3.688879)/200 = 0.0531018; sqrt = 0.230438; ·Δ = 0.535061.
    got = azuma_complexity_bits(math.log2(5), 10.0, 0.025, 100)
    assert got == pytest.approx(0.5350608918179713, rel=1e-12)


def test_tiny_vocab_alpha_one_has_no_complexity():
    # α = 1 ⇒ Δ = 0 ⇒ the bound equals the empirical risk whatever L.
    assert azuma_complexity_bits(0.0, 1e6, 0.05, 10) == 0.0


def test_bound_from_draws_worked_example():
    # Draws (bits) [1, 2, 3, 2]: R̂_n = 2. Δ = 4, L = 0, δ1 = δ2 = 0.05, m = 1000, n = 4:
    # ln 20 = 2.9957323; complexity = 4·sqrt(2.9957323 / 2000) = 4·0.0387023 = 0.1548091;
    # subsample = 4·sqrt(2.9957323 / 8) = 4·0.6119367 = 2.4477468; bound = 2 + 0.1548091 + 2.4477468 = 4.6025559.
    res = azuma_bound_from_draws(np.array([[1.0, 2.0, 3.0, 2.0]]), np.array([4.0]), 0.0, 0.05, 0.05, 1000, 4)
    assert res["empirical"][0] == 2.0
    assert res["complexity"][0] == pytest.approx(4 * math.sqrt(math.log(20) / 2000), rel=1e-12)
    assert res["subsample"][0] == pytest.approx(2.4477468, rel=1e-7)
    assert res["bound"][0] == pytest.approx(4.6025559, rel=1e-7)


def test_monotone_in_message_delta_and_m():
    bits = [0, 10, 1e3, 1e5, 1e7]
    vals = [float(azuma_complexity_bits(5.0, b, 0.05, 1e6)) for b in bits]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    deltas = [0.5, 0.1, 0.01, 1e-6]
    vals = [float(azuma_complexity_bits(5.0, 100, d, 1e6)) for d in deltas]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    ms = [1e2, 1e4, 1e6, 1e9]
    vals = [float(azuma_complexity_bits(5.0, 100, 0.05, m)) for m in ms]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_theorem_a_covers_on_simulated_martingale():
    # A real martingale with known conditional means: a two-state Markov source, fixed predictor.
    # With L = 0 (one hypothesis) the bound must fail in at most ~δ of the trials.
    rng = np.random.default_rng(7)
    trials, m, delta = 4000, 200, 0.1
    trans = np.array([[0.9, 0.1], [0.3, 0.7]])
    pred = np.array([[0.6, 0.4], [0.5, 0.5]])  # a miscalibrated model: p(next | prev)
    loss = -np.log2(pred)  # loss[prev, next] in bits, range [min, max]
    lo, hi = loss.min(), loss.max()
    state = np.zeros(trials, dtype=int)
    emp = np.zeros(trials)
    cond = np.zeros(trials)
    for _ in range(m):
        nxt = (rng.random(trials) < trans[state, 1]).astype(int)
        emp += loss[state, nxt]
        cond += trans[state, 0] * loss[state, 0] + trans[state, 1] * loss[state, 1]
        state = nxt
    bound = emp / m + azuma_complexity_bits(hi - lo, 0.0, delta, m)
    failures = np.mean(cond / m > bound)
    assert failures <= delta


@settings(max_examples=200, deadline=None)
@given(rng=st.floats(0.01, 30), bits=st.floats(0, 1e7), delta=st.floats(1e-9, 0.99), m=st.floats(1, 1e12),
       factor=st.floats(1.01, 100))
def test_monotonicity_property(rng, bits, delta, m, factor):
    base = float(azuma_complexity_bits(rng, bits, delta, m))
    assert float(azuma_complexity_bits(rng, bits * factor + 1, delta, m)) > base
    assert float(azuma_complexity_bits(rng, bits, delta / factor, m)) > base
    assert float(azuma_complexity_bits(rng, bits, delta, m * factor)) < base
