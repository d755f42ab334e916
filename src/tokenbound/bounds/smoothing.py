"""Prediction smoothing: bounded log-loss in bits (docs/theory.md §2; Lotfi et al. 2024, §3).

p_h(v | c) = (1 − α)·p_θ(v | c) + α/V, so the smoothed loss ℓ = −log2 p_h(x | c) obeys
L_min(α, V) <= ℓ <= L_max(α, V) with
    L_max = log2(V/α)                  (p_θ(x|c) = 0),
    L_min = −log2(1 − α + α/V)         (p_θ(x|c) = 1),
    Δ     = L_max − L_min = log2(1 + (1 − α)·V/α).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import TokenboundError

# The seed paper's α grid (YilunKuang/token-bounds-for-llms); choosing the best α after seeing the
# data costs log2(len(grid)) bits of prior.
DEFAULT_ALPHA_GRID: tuple[float, ...] = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5)


def check_alpha_grid(alpha_grid: Sequence[float], param: str = "alpha_grid") -> np.ndarray:
    """Return the grid as float64 after checking it is non-empty with every α in (0, 1]."""
    grid = np.asarray(list(alpha_grid), dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise TokenboundError("the α grid is empty", param=param)
    bad = ~np.isfinite(grid) | (grid <= 0) | (grid > 1)
    if bad.any():
        raise TokenboundError(f"α must be in (0, 1], got {float(grid[np.argmax(bad)])!r}", param=param)
    return grid


def check_vocab_size(vocab_size: int, param: str = "vocab_size") -> int:
    if int(vocab_size) != vocab_size or int(vocab_size) < 2:
        raise TokenboundError(f"vocabulary size must be an integer >= 2, got {vocab_size!r}", param=param)
    return int(vocab_size)


def loss_range_bits(alpha: float | np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L_min, L_max, Δ) in bits of the α-smoothed log-loss over a vocabulary of V tokens (docs/theory.md §2).

    Works elementwise on an array of α. Δ is computed as log2(1 + (1−α)V/α) directly (not as a
    difference) so that it stays accurate for α close to 1, where Δ → 0 (α = 1 gives Δ = 0: the
    uniform predictor has no loss variation at all).
    """
    a = np.asarray(alpha, dtype=np.float64)
    v = float(vocab_size)
    l_max = np.log2(v / a)
    l_min = -np.log2(1.0 - a + a / v)
    delta = np.log2(1.0 + (1.0 - a) * v / a)
    return l_min, l_max, delta


def smoothed_loss_bits(prob: np.ndarray, alpha_grid: Sequence[float] | np.ndarray, vocab_size: int) -> np.ndarray:
    """Smoothed losses ℓ = −log2((1 − α)·p + α/V) for every α of the grid at once: shape [A, N].

    `prob` holds the unsmoothed model probabilities of the true tokens. Each row lies in
    [L_min(α), L_max(α)]; the result is clipped to that interval so float rounding can never
    step outside the range the bounds rely on.
    """
    p = np.asarray(prob, dtype=np.float64)
    a = np.asarray(alpha_grid, dtype=np.float64).reshape(-1, 1)
    v = float(vocab_size)
    loss = -np.log2((1.0 - a) * p[None, :] + a / v)
    l_min, l_max, _ = loss_range_bits(a, vocab_size)
    return np.clip(loss, l_min, l_max)


def random_guess_bits(vocab_size: int) -> float:
    """log2 V: the loss of the uniform predictor, the line above which a bound is vacuous."""
    return math.log2(vocab_size)
