"""The variance-adaptive token-level bound (Freedman / empirical-Bernstein type; proof in docs/theory.md §6).

Let ℓ_i ∈ [L_min, L_max] (range Δ > 0), μ_i = E[ℓ_i | x_<i], and ĉ_i ∈ [L_min, L_max] a *predictable*
centre (a function of x_<i and h only; here the model's predictive entropy clipped to the loss range).
Put y_i = (ĉ_i − ℓ_i)/Δ ∈ [−1, 1] and ψ(λ) = −ln(1 − λ) − λ. Fan, Grama & Liu (2012, 2015):
exp(λy − ψ(λ)y²) <= 1 + λy for y >= −1, λ ∈ [0, 1). Hence
E[exp(λy_i − ψ y_i²) | F_{i−1}] <= 1 + λ(ĉ_i − μ_i)/Δ <= exp(λ(ĉ_i − μ_i)/Δ), and since
y_i − (ĉ_i − μ_i)/Δ = (μ_i − ℓ_i)/Δ, M_t = exp(λ Σ_{i<=t} (μ_i − ℓ_i)/Δ − ψ(λ) Σ_{i<=t} y_i²) is a
non-negative supermartingale with M_0 = 1. Markov's inequality with a union bound over the prefix-free
prior 2^−L(h) and the K_λ values of a λ grid fixed in advance gives, with probability >= 1 − δ1, for all h
and every λ in the grid:

    R(h) <= R̂(h) + Δ·(L(h)·ln 2 + ln(K_λ/δ1))/(λ m) + ψ(λ)·Σ_i (ℓ_i − ĉ_i)² / (λ m Δ).
"""
from __future__ import annotations

import math

import numpy as np

# Fixed in advance (part of the bound's definition). Values close to 1 matter when L/m is large,
# small values when the variance term dominates; K_λ = 14 costs log2(14) ≈ 3.8 bits of prior.
DEFAULT_LAMBDA_GRID: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                          0.95, 0.99)


def psi(lam: float | np.ndarray) -> np.ndarray:
    """ψ(λ) = −ln(1 − λ) − λ for λ ∈ [0, 1) (≈ λ²/2 for small λ; computed with log1p for accuracy)."""
    lam = np.asarray(lam, dtype=np.float64)
    return -np.log1p(-lam) - lam


def fan_grama_liu_sides(y: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of exp(λy − ψ(λ)y²) <= 1 + λy (valid for y >= −1, λ ∈ [0, 1)); returned for testing."""
    y = np.asarray(y, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    return np.exp(lam * y - psi(lam) * y * y), 1.0 + lam * y


def check_lambda_grid(lambda_grid) -> np.ndarray:
    from ..errors import TokenboundError

    grid = np.asarray(list(lambda_grid), dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise TokenboundError("lambda_grid: the λ grid is empty")
    bad = ~np.isfinite(grid) | (grid <= 0) | (grid >= 1)
    if bad.any():
        raise TokenboundError(f"lambda_grid: λ must be in (0, 1), got {float(grid[np.argmax(bad)])!r}")
    return grid


def variance_adaptive_terms_bits(mean_sq_dev_bits2: np.ndarray, loss_range: np.ndarray, prior_bits: float, delta: float, num_tokens: float,
                                 lambda_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complexity term of the variance-adaptive bound for every (α, λ): returns (occam [A,K], variance [A,K]).

    occam    = Δ·(L·ln 2 + ln(1/δ1))/(λ m)
    variance = ψ(λ)·v/(λ Δ) with v an (upper bound on the) mean squared deviation (1/m)Σ(ℓ_i − ĉ_i)².
    `prior_bits` must already include log2 K_λ (the λ union bound: ln(K_λ/δ1) = log2(K_λ)·ln 2 + ln(1/δ1)).
    The bound is mean_loss + occam + variance; where Δ = 0 (α = 1) the loss is constant and both terms vanish.
    """
    lam = np.asarray(lambda_grid, dtype=np.float64)[None, :]
    rng = np.asarray(loss_range, dtype=np.float64)[:, None]
    v = np.asarray(mean_sq_dev_bits2, dtype=np.float64)[:, None]
    log_term_nats = prior_bits * math.log(2.0) + math.log(1.0 / delta)
    occam = rng * log_term_nats / (lam * num_tokens)
    safe = np.where(rng > 0, rng, 1.0)
    variance = np.where(rng > 0, psi(lam) * v / (lam * safe), 0.0)
    return occam, variance


def variance_adaptive_bound_from_draws(loss_draws: np.ndarray, sq_dev_draws: np.ndarray, l_min: np.ndarray,
                                       l_max: np.ndarray, loss_range: np.ndarray, prior_bits: float,
                                       shares: dict[str, float], num_tokens: float, lambda_grid: np.ndarray,
                                       ci: str) -> dict[str, np.ndarray]:
    """Variance-adaptive bound per (α, λ) from the n i.i.d. draws: arrays of shape [A] or [A, K].

    R(h) <= U_mean + Δ(L ln 2 + ln(1/δ1))/(λm) + ψ(λ)·U_var/(λΔ), where U_mean >= (1/m)Σℓ_i with
    probability >= 1 − δ2 and U_var >= (1/m)Σ(ℓ_i − ĉ_i)² with probability >= 1 − δ3 (subsampling.upper_mean
    with method `ci`; the right side is increasing in both). Total confidence 1 − δ1 − δ2 − δ3.
    """
    from .subsampling import upper_mean

    empirical, mean_upper = upper_mean(loss_draws, l_min, l_max, shares["subsample"], ci)
    sq_mean, sq_upper = upper_mean(sq_dev_draws, np.zeros_like(loss_range), loss_range ** 2,
                                   shares["subsample_variance"], ci)
    occam, variance = variance_adaptive_terms_bits(sq_upper, loss_range, prior_bits, shares["main"],
                                                   num_tokens, lambda_grid)
    return {"empirical": empirical, "mean_upper": mean_upper, "sq_dev_mean": sq_mean, "sq_dev_upper": sq_upper,
            "occam": occam, "variance": variance, "bound": mean_upper[:, None] + occam + variance}
