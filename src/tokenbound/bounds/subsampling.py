"""Upper confidence bounds for the full-stream mean of a bounded quantity from n i.i.d. draws.

The bound needs R̂ = (1/m) Σ_{i<=m} ℓ_i but only n draws are scored. The sampler's randomness is
independent of the data, so conditionally on the stream the draw values Z_1..Z_n are i.i.d. with mean
R̂ (token sampler: Z_j is the loss at one uniformly drawn position; block sampler: Z_j is the mean loss
over the scored positions of one window, the windows' scoring sets partitioning the stream and a window being
drawn with probability proportional to the number of positions it scores — the window that scores a uniformly
drawn position — so that E Z_j = Σ_w (s_w/m)·(1/s_w)·Σ_{i∈w} ℓ_i = R̂ whatever the sizes s_w;
docs/theory.md §5).

Implemented, for values in [lo, hi] with w = hi − lo (each with probability >= 1 − δ):
- Hoeffding (1963), sampling with replacement:  E Z <= Z̄ + w·sqrt(ln(1/δ) / (2n)).
- Maurer & Pontil (2009), Theorem 4 (empirical Bernstein, n >= 2), on Y = (Z − lo)/w ∈ [0, 1]:
      E Y <= Ȳ + sqrt(2·V_n·ln(2/δ)/n) + 7·ln(2/δ)/(3(n − 1)),  V_n the unbiased sample variance.
- "best": the smaller of the two, each computed at δ/2 (a union bound pays for the choice).
- "betting": the betting bound of Waudby-Smith & Ramdas (2024), see betting.py; no range term, so it is far
  tighter than the others when the draws vary little (block sampling). A draw outside [lo, hi] raises a
  TokenboundError (betting.check_within), it is never clipped.
- "exact": the draws are every position exactly once, so their mean IS the full-stream mean (no δ spent).

A control variate (``ControlVariate``: a quantity g known at every position, so its exact population mean ḡ
is known) may accompany the betting bound: it bounds the mean of z_i − β_i(g_i − ḡ), β_i predictable, whose
mean is the same but whose spread is far smaller when z and g move together (betting.py, docs/theory.md §5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CI_METHODS = ("hoeffding", "maurer_pontil", "best", "betting")


@dataclass(frozen=True)
class ControlVariate:
    """A control for the draws: its value per draw ([n]), exact population mean, and possible range."""

    draws: np.ndarray
    mean: float
    lo: float
    hi: float


def draw_means(values: np.ndarray, draw: np.ndarray, num_draws: int) -> np.ndarray:
    """Mean of `values` over the scored positions of each draw: [..., N] -> [..., n].

    Under the token sampler every draw is one position and this is the identity (up to order).
    """
    vals = np.asarray(values, dtype=np.float64)
    counts = np.bincount(draw, minlength=num_draws).astype(np.float64)
    flat = vals.reshape(-1, vals.shape[-1])
    sums = np.stack([np.bincount(draw, weights=row, minlength=num_draws) for row in flat])
    return (sums / counts).reshape(vals.shape[:-1] + (num_draws,))


def hoeffding_width(value_range: float | np.ndarray, n: int, delta: float) -> np.ndarray:
    """Hoeffding's one-sided width w·sqrt(ln(1/δ)/(2n)) for n i.i.d. values in an interval of length w."""
    return np.asarray(value_range, dtype=np.float64) * math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def maurer_pontil_width(normalized_values: np.ndarray, delta: float) -> np.ndarray:
    """Maurer–Pontil (2009, Thm 4) width sqrt(2 V_n ln(2/δ)/n) + 7 ln(2/δ)/(3(n−1)) for values in [0, 1].

    Rows of `normalized_values` ([..., n]) are separate samples; needs n >= 2 (returns +inf otherwise).
    """
    y = np.asarray(normalized_values, dtype=np.float64)
    n = y.shape[-1]
    if n < 2:
        return np.full(y.shape[:-1], np.inf)
    var = y.var(axis=-1, ddof=1)
    log_term = math.log(2.0 / delta)
    return np.sqrt(2.0 * var * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))


def upper_mean(draw_values: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray, delta: float,
               method: str = "hoeffding", control: ControlVariate | None = None,
               forecast_draws: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sample mean, upper confidence bound) of E Z for i.i.d. draws Z ∈ [lo, hi], per row of [..., n].

    With probability >= 1 − δ the true mean is <= the returned upper bound. The upper bound never
    exceeds `hi` (the trivial bound). `lo`/`hi` broadcast against the leading axes. `control` (betting only)
    is shared by every row; the draws must be in draw order (the bets and β_i are predictable).

    `forecast_draws` = N: the draws are a pilot, and the radius is instead the one `method` gives on N draws
    resampled from them (fixed seed, the same indices for every row). A forecast used only to choose α
    and λ before the certifying draws are looked at (docs/theory.md §5), never as a bound.
    """
    z = np.asarray(draw_values, dtype=np.float64)
    n = z.shape[-1]
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    width = hi - lo
    mean = z.mean(axis=-1)
    if method == "exact":
        return mean, mean
    if forecast_draws:
        idx = np.random.default_rng(0).integers(0, n, size=forecast_draws)
        boot = None if control is None else ControlVariate(control.draws[idx], control.mean, control.lo, control.hi)
        boot_mean, boot_up = upper_mean(z[..., idx], lo, hi, delta, method, control=boot)
        return mean, np.minimum(mean + (boot_up - boot_mean), hi)
    if control is not None and method != "betting":
        raise ValueError(f"a control variate needs the betting confidence bound, not {method!r}")
    if method == "betting":
        from .betting import betting_upper, control_variate_draws

        if control is None:
            up = betting_upper(z, delta, lo, hi)
        else:
            values, limits, _ = control_variate_draws(z, control.draws, control.mean, control.lo, control.hi, hi)
            up = betting_upper(values, delta, lo, hi, upper_limits=limits)
        radius = np.maximum(0.0, up - mean)
    elif method == "hoeffding":
        radius = hoeffding_width(width, n, delta)
    elif method in ("maurer_pontil", "best"):
        share = delta if method == "maurer_pontil" else delta / 2.0
        safe = np.where(width > 0, width, 1.0)
        y = (z - lo[..., None]) / safe[..., None] if np.ndim(lo) else (z - lo) / safe
        with np.errstate(invalid="ignore"):  # 0·inf where w = 0 or n < 2; masked just below
            radius = width * maurer_pontil_width(y, share)
        if method == "best":
            radius = np.minimum(radius, hoeffding_width(width, n, share))
    else:
        raise ValueError(f"unknown confidence-interval method {method!r}; expected one of {CI_METHODS}")
    radius = np.where(width > 0, radius, 0.0)
    return mean, np.minimum(mean + radius, hi)
