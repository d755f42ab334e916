"""The variance-adaptive token-level bound (empirical-Bernstein / betting type; proof in docs/theory.md §6).

Let ℓ_i ∈ [L_min, L_max] (range Δ > 0), μ_i = E[ℓ_i | x_<i], and ĉ_i ∈ [L_min, L_max] a *predictable*
centre (a function of x_<i and h only; here the model's predictive entropy clipped to the loss range).
Put y_i = (ĉ_i − ℓ_i)/Δ ∈ [−1, 1] and the penalty φ_λ(y) = λy − ln(1 + λy) >= 0 (λ ∈ [0, 1)). Since
E[exp(λy_i − φ_λ(y_i)) | F_{i−1}] = 1 + λ(ĉ_i − μ_i)/Δ <= exp(λ(ĉ_i − μ_i)/Δ),
M_t = exp(λ Σ_{i<=t} (μ_i − ℓ_i)/Δ − Σ_{i<=t} φ_λ(y_i)) is a non-negative supermartingale with M_0 = 1, and
Markov's inequality with a union bound over the prefix-free prior 2^−L(h) and the K_λ values of a λ grid fixed
in advance gives, with probability >= 1 − δ1, for all h and every λ in the grid (Theorem B):

    R(h) <= R̂(h) + Δ·(L(h)·ln 2 + ln(K_λ/δ1))/(λ m) + (Δ/(λ m))·Σ_i φ_λ(y_i).

Fan, Grama & Liu (2012, 2015): φ_λ(y) <= ψ(λ)·y² with ψ(λ) = −ln(1 − λ) − λ for y >= −1, so the last term is
at most ψ(λ)·Σ_i (ℓ_i − ĉ_i)²/(λ m Δ), the Freedman form (docs/theory.md §6); the exact penalty is never looser
and, because φ_λ(y) < λ²y²/2 for y > 0, is 20–30 % smaller on real language-model losses.
"""
from __future__ import annotations

import math

import numpy as np

# Fixed in advance (part of the bound's definition). Values close to 1 matter when L/m is large,
# small values when the variance term dominates; language models at L/m ~ 0.01-0.03 choose 0.6-0.9.
# K_λ = 14 costs log2(14) ≈ 3.8 bits of prior and a factor 14 in each subsampling statement's δ.
DEFAULT_LAMBDA_GRID: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8,
                                          0.9, 0.95)


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
        raise TokenboundError("the λ grid is empty", param="lambda_grid")
    bad = ~np.isfinite(grid) | (grid <= 0) | (grid >= 1)
    if bad.any():
        raise TokenboundError(f"λ must be in (0, 1), got {float(grid[np.argmax(bad)])!r}", param="lambda_grid")
    return grid


def log_penalty(y: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """φ_λ(y) = λy − ln(1 + λy) for y >= −1, λ ∈ [0, 1): >= 0, convex, 0 at y = 0, ψ(λ) at y = −1."""
    y = np.asarray(y, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    return lam * y - np.log1p(lam * y)


def occam_bits(loss_range: np.ndarray, prior_bits: float, delta: float, num_tokens: float,
               lambda_grid: np.ndarray) -> np.ndarray:
    """Δ·(L·ln 2 + ln(1/δ1))/(λ m) for every (α, λ): [A, K]. `prior_bits` must include log2 K_λ (the λ union)."""
    lam = np.asarray(lambda_grid, dtype=np.float64)[None, :]
    rng = np.asarray(loss_range, dtype=np.float64)[:, None]
    return rng * (prior_bits * math.log(2.0) + math.log(1.0 / delta)) / (lam * num_tokens)


def penalized_losses(losses: np.ndarray, centre: np.ndarray, loss_range: np.ndarray, lam: float) -> np.ndarray:
    """z_i(λ) = ℓ_i + (Δ/λ)·φ_λ((ĉ_i − ℓ_i)/Δ) per α row ([A, N]); its mean plus the Occam term is Theorem B.

    z ∈ [L_min, L_max + Δψ(λ)/λ] (φ_λ on [−1, 1] peaks at y = −1). Where Δ = 0 (α = 1) z = ℓ.
    """
    rng = np.asarray(loss_range, dtype=np.float64)[:, None]
    safe = np.where(rng > 0, rng, 1.0)
    y = np.clip((centre - losses) / safe, -1.0, 1.0)  # exact in theory; clip float noise at the ends
    return losses + np.where(rng > 0, safe / lam * log_penalty(y, lam), 0.0)


def variance_adaptive_bound_from_draws(penalized_draws: np.ndarray, loss_draws: np.ndarray, l_min: np.ndarray,
                                       l_max: np.ndarray, loss_range: np.ndarray, prior_bits: float,
                                       shares: dict[str, float], num_tokens: float, lambda_grid: np.ndarray,
                                       ci: str, control=None, forecast_draws: int | None = None
                                       ) -> dict[str, np.ndarray]:
    """Theorem B per (α, λ) from n i.i.d. draws: penalized_draws [A, K, n] (draw means of z(λ)), loss_draws [A, n].

    R(h) <= U_z + Δ(L ln 2 + ln(1/δ1))/(λm), U_z >= (1/m)Σ_i z_i(λ) with probability >= 1 − δ2 (one
    subsampling statement per (α, λ); `shares["subsample"]` must already be divided among them). Total
    confidence 1 − δ1 − δ2. `control`: a ControlVariate for the betting bound. `forecast_draws`: the draws are
    a pilot; see subsampling.upper_mean.
    """
    from .subsampling import upper_mean

    lam = np.asarray(lambda_grid, dtype=np.float64)
    z_hi = l_max[:, None] + loss_range[:, None] * psi(lam)[None, :] / lam[None, :]
    z_mean, z_upper = upper_mean(penalized_draws, np.broadcast_to(l_min[:, None], z_hi.shape), z_hi,
                                 shares["subsample"], ci, control=control, forecast_draws=forecast_draws)
    occam = occam_bits(loss_range, prior_bits, shares["main"], num_tokens, lam)
    empirical = np.asarray(loss_draws, dtype=np.float64).mean(axis=-1)
    return {"empirical": empirical, "variance": z_mean - empirical[:, None], "subsample": z_upper - z_mean,
            "occam": occam, "bound": z_upper + occam}
