"""Prediction smoothing: loss range and smoothed losses in bits (docs/theory.md §2)."""
import math

import numpy as np
import pytest

from tokenbound.bounds.smoothing import (DEFAULT_ALPHA_GRID, check_alpha_grid, loss_range_bits,
                                         random_guess_bits, smoothed_loss_bits)
from tokenbound.errors import TokenboundError


def test_loss_range_worked_example_alpha_0_1_vocab_2():
    # V = 2, α = 0.1: L_max = log2(2/0.1) = log2 20 = 4.321928...,
    # L_min = −log2(1 − 0.1 + 0.1/2) = −log2 0.95 = 0.0740006...,
    # Δ = log2(1 + 0.9·2/0.1) = log2 19 = 4.247927... (= L_max − L_min = log2(20/19)... check below)
    l_min, l_max, delta = loss_range_bits(0.1, 2)
    assert l_max == pytest.approx(4.321928094887363, rel=1e-12)
    assert l_min == pytest.approx(0.07400058144377675, rel=1e-12)
    assert delta == pytest.approx(math.log2(19), rel=1e-12)
    assert delta == pytest.approx(l_max - l_min, rel=1e-12)


def test_alpha_one_has_zero_range_at_log2_v():
    # α = 1: the uniform predictor; every loss is log2 V and Δ = log2(1 + 0) = 0.
    l_min, l_max, delta = loss_range_bits(1.0, 4)
    assert l_min == pytest.approx(2.0) and l_max == pytest.approx(2.0) and delta == 0.0
    losses = smoothed_loss_bits(np.array([0.0, 0.3, 1.0]), [1.0], 4)
    np.testing.assert_allclose(losses, [[2.0, 2.0, 2.0]])


def test_smoothed_losses_whole_grid_shape_and_values():
    # V = 4, α = 0.5, p = 1: −log2(0.5 + 0.125) = −log2 0.625 = 0.678072; p = 0: −log2(0.125) = 3.
    # α = 0.25, p = 0.5: −log2(0.75·0.5 + 0.0625) = −log2 0.4375 = 1.192645.
    losses = smoothed_loss_bits(np.array([1.0, 0.0, 0.5]), [0.5, 0.25], 4)
    assert losses.shape == (2, 3)
    assert losses[0, 0] == pytest.approx(0.6780719051126377, rel=1e-12)
    assert losses[0, 1] == pytest.approx(3.0, rel=1e-12)
    assert losses[1, 2] == pytest.approx(-math.log2(0.4375), rel=1e-12)


def test_losses_stay_in_range_and_decrease_with_probability():
    rng = np.random.default_rng(1)
    p = np.sort(rng.random(200))
    losses = smoothed_loss_bits(p, DEFAULT_ALPHA_GRID, 50257)
    l_min, l_max, _ = loss_range_bits(np.array(DEFAULT_ALPHA_GRID), 50257)
    assert (losses >= l_min[:, None]).all() and (losses <= l_max[:, None]).all()
    assert (np.diff(losses, axis=1) <= 0).all()


def test_range_shrinks_as_alpha_grows():
    _, _, delta = loss_range_bits(np.array(DEFAULT_ALPHA_GRID), 8192)
    assert (np.diff(delta) < 0).all()


def test_default_grid_is_the_papers():
    assert DEFAULT_ALPHA_GRID == (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5)
    assert random_guess_bits(50257) == pytest.approx(15.6170, abs=1e-4)


@pytest.mark.parametrize("grid", [[], [0.0], [1.5], [-0.1], [float("nan")]])
def test_bad_alpha_grid_is_rejected(grid):
    with pytest.raises(TokenboundError, match="alpha_grid"):
        check_alpha_grid(grid)
