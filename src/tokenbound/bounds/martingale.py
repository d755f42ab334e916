"""Theorem A: the token-level Azuma–Hoeffding bound with a prefix-free prior (Lotfi et al. 2024, Thm 1).

Let ℓ_i ∈ [L_min, L_max] (range Δ) and μ_i = E[ℓ_i | x_<i]. The differences μ_i − ℓ_i form a martingale
difference sequence, each conditionally inside an interval of length Δ, so (Azuma–Hoeffding)
P(Σ_i (μ_i − ℓ_i) >= t) <= exp(−2t²/(mΔ²)). A union bound over a countable hypothesis set with weights
δ1·2^−L(h) (Kraft: Σ 2^−L(h) <= 1 for a prefix-free code fixed before the data) gives, with probability
>= 1 − δ1, simultaneously for all h:

    R(h) <= R̂(h) + Δ·sqrt((L(h)·ln 2 + ln(1/δ1)) / (2m)).
"""
from __future__ import annotations

import math

import numpy as np


def azuma_complexity_bits(loss_range: float | np.ndarray, prior_bits: float, delta: float,
                          num_tokens: float) -> np.ndarray:
    """The Theorem A complexity term Δ·sqrt((L·ln 2 + ln(1/δ1)) / (2m)) in bits per token.

    `loss_range` is Δ (may be an array, one per α), `prior_bits` is L(h) (message, prefix and every
    paid choice), `delta` is δ1, `num_tokens` is m. Increases with L and as δ1 → 0, decreases with m.
    """
    log_term_nats = prior_bits * math.log(2.0) + math.log(1.0 / delta)
    return np.asarray(loss_range, dtype=np.float64) * math.sqrt(log_term_nats / (2.0 * num_tokens))


def azuma_bound_from_draws(draw_values: np.ndarray, loss_range: np.ndarray, prior_bits: float,
                           delta_main: float, delta_subsample: float, num_tokens: float,
                           sample_size: int | None) -> dict[str, np.ndarray]:
    """Theorem A plus Hoeffding subsampling, per row (one row per α): R(h) <= R̂_n + complexity + subsample.

    R̂_n is the mean of the n i.i.d. draw values (each in an interval of length Δ, with mean R̂);
    subsample = Δ·sqrt(ln(1/δ2)/(2n)) (Hoeffding, sampling with replacement); complexity as in Theorem A
    at δ1. Holds with probability >= 1 − δ1 − δ2. Returns arrays: empirical, complexity, subsample, bound.
    `sample_size` None means the draws are every position exactly once: R̂_n = R̂, no subsampling term.
    """
    from .subsampling import hoeffding_width

    empirical = np.asarray(draw_values, dtype=np.float64).mean(axis=-1)
    complexity = azuma_complexity_bits(loss_range, prior_bits, delta_main, num_tokens)
    if sample_size is None:
        subsample = np.zeros_like(complexity)
    else:
        subsample = hoeffding_width(loss_range, sample_size, delta_subsample)
    return {"empirical": empirical, "complexity": complexity, "subsample": subsample,
            "bound": empirical + complexity + subsample}
