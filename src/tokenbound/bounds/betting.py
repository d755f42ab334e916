"""Betting confidence bound for the mean of bounded draws (Waudby-Smith & Ramdas 2024), with control variates.

Source: I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by betting",
JRSS-B 86(1), 2024 (arXiv 2010.09686), §4 (capital processes, Ville's inequality) and §5.1 (predictable
plug-in bets); control variates: the same paper's martingale argument applied to Z_i = z_i − β_i(g_i − ḡ)
(docs/theory.md §5). Stated for the one-sided upper bound used here:

Let Z_1, …, Z_n satisfy E[Z_i | Z_<i] = μ and Z_i <= u_i, where the upper limit u_i is predictable (a function
of Z_<i only; a constant in the plain case). For a candidate m let K_t(m) = Π_{i<=t} (1 + λ_i(m)(m − Z_i)) with
bets λ_i(m) = min(λ̃_i, c/(u_i − m)) (λ̃_i >= 0 predictable, c < 1; no cap where u_i <= m). Every factor is
>= 1 − c > 0 (for Z_i > m: λ_i(m)(Z_i − m) <= c(Z_i − m)/(u_i − m) <= c). At m = μ the bets are predictable,
E[1 + λ_i(μ)(μ − Z_i) | Z_<i] = 1, so K_t(μ) is a non-negative martingale with K_0 = 1 and Ville's inequality
gives P(max_{t<=n} K_t(μ) >= 1/δ) <= δ. Every factor is non-decreasing in m (for m >= Z_i both λ_i(m) and
m − Z_i grow; for m < Z_i, λ_i(m)(Z_i − m) is the minimum of two non-increasing functions), so the rejected
set {m : max_t K_t(m) >= 1/δ} is an up-set and, with probability >= 1 − δ, μ < U := its infimum.

The cap c/(u_i − m) limits the bet by the room *above* the candidate, which is what an undetected high draw
can cost. It is WSR's own truncation: their hedged capital process (§4) caps the bet on each side by the
room on that side, c/m and c/(1 − m) on [0, 1], i.e. c/(u − m) in the original units for the side used here;
with control variates u is replaced by the predictable limit u_i.

Ranges are checked, never enforced by clipping: a draw above its limit (or, for plain draws, below `lo`) means
the declared range is wrong, and the proof needs Z_i <= u_i, so it raises a TokenboundError. The only slack is
RANGE_RTOL·max(1, |limit|), for rounding: a window mean of values exactly at a limit, or a control's range
computed from a cumulative sum over the whole stream, can miss the exact value by rounding: a window mean taken
as a difference of two partial sums of about 5e9 bits (a 10^9-token stream) is off by about sqrt(s)·ulp/s, some
5e-8 bits for s = 128 scored positions. 1e-7 of the limit (1e-6 bits at 10 bits) is well above that and well
below any real range error (the smallest one, a vocabulary off by one at V = 50257, moves L_max by 2.9e-5 bits). Within the slack the computed value is the exact one (inside its range) up to rounding,
so it is replaced by the limit.

Plug-in bets (fixed-n, WSR §5.1): λ̃_i = sqrt(2 ln(1/δ) / (n σ̂²_{i−1})) with σ̂²_{i−1} =
(w²/4 + Σ_{j<i} (Z_j − μ̂_j)²)/i, μ̂_j = ((lo + hi)/2 + Σ_{k<j} Z_k)/j, w = hi − lo: any predictable choice is
valid; this one makes the width ≈ σ·sqrt(2 ln(1/δ)/n) for small variances.
"""
from __future__ import annotations

import math

import numpy as np

MAX_BET = 0.9  # c: every factor stays >= 1 − c > 0
RANGE_RTOL = 1e-7  # rounding slack of the range checks, relative to max(1, |limit|) (see the module docstring)
MAX_CONTROL_COEF = 4.0  # |β_i| <= this; bounds how far a control variate can move the upper limit u_i
_BISECTION_STEPS = 40  # brackets are < 100 bits wide: 2^-40 of that is far below any reported digit


def _shifted_cumsum(x: np.ndarray) -> np.ndarray:
    """Σ_{j<i} x_j along the last axis (0 for i = 0)."""
    return np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)[..., :-1]], axis=-1)


def _slack(limit) -> np.ndarray:
    return RANGE_RTOL * np.maximum(1.0, np.abs(np.asarray(limit, dtype=np.float64)))


def check_within(values: np.ndarray, lo=None, hi=None, what: str = "draws") -> None:
    """Raise a TokenboundError naming `what` if a value lies outside [lo, hi] by more than the rounding slack.

    `lo`/`hi` broadcast against `values` (None: that side is not checked)."""
    from ..errors import TokenboundError

    v = np.asarray(values, dtype=np.float64)
    for limit, side in ((hi, "above its upper limit"), (lo, "below its lower limit")):
        if limit is None:
            continue
        lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), v.shape)
        bad = v > lim + _slack(lim) if side.startswith("above") else v < lim - _slack(lim)
        if bad.any():
            j = np.unravel_index(int(np.argmax(bad)), v.shape)
            raise TokenboundError(f"{what}: value {float(v[j])!r} at index {tuple(int(i) for i in j)} is {side} "
                                  f"{float(lim[j])!r}; the declared range of the draws is wrong")


def predictable_bets(z: np.ndarray, delta: float, lo=0.0, hi=1.0) -> np.ndarray:
    """Plug-in bets λ̃_i (in 1/units of z) for each row of z ([..., n]): functions of the row's earlier values only.

    `lo`, `hi` ([...] or scalars, fixed in advance) set the prior guess of the mean and variance.
    """
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[-1]
    lo = np.asarray(lo, dtype=np.float64)[..., None]
    hi = np.asarray(hi, dtype=np.float64)[..., None]
    counts = np.arange(1, n + 1, dtype=np.float64)
    mu_hat = (0.5 * (lo + hi) + _shifted_cumsum(z)) / counts
    var_hat = (0.25 * np.maximum(hi - lo, 1e-150) ** 2 + _shifted_cumsum((z - mu_hat) ** 2)) / counts
    return np.sqrt(2.0 * math.log(1.0 / delta) / (n * var_hat))


def betting_upper(z: np.ndarray, delta: float, lo=0.0, hi=1.0, upper_limits: np.ndarray | None = None
                  ) -> np.ndarray:
    """Upper confidence bound U on μ for each row of z ([..., n] -> [...]), level 1 − δ.

    `lo`, `hi`: the range of the draws ([...] or scalars). `upper_limits` ([..., n], default `hi`): predictable
    per-draw limits u_i >= Z_i (control variates). U never exceeds min_i u_i, itself a valid bound
    (μ = E[Z_i | Z_<i] <= u_i).
    """
    z = np.asarray(z, dtype=np.float64)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    lam = predictable_bets(z, delta, lo, hi)
    upper = np.broadcast_to(np.asarray(hi, dtype=np.float64)[..., None] if upper_limits is None
                            else np.asarray(upper_limits, dtype=np.float64), z.shape)
    check_within(z, None if upper_limits is not None else np.asarray(lo, dtype=np.float64)[..., None], upper,
                 "draws")
    z = np.minimum(z, upper)  # within the rounding slack only (checked just above)
    threshold = math.log(1.0 / delta)

    def rejected(m: np.ndarray) -> np.ndarray:
        room = upper - m[..., None]
        bet = np.where(room > 0, np.minimum(lam, MAX_BET / np.where(room > 0, room, 1.0)), lam)
        log_capital = np.cumsum(np.log1p(bet * (m[..., None] - z)), axis=-1)
        return log_capital.max(axis=-1) >= threshold

    top = upper.min(axis=-1)
    bottom = np.minimum(np.broadcast_to(np.asarray(lo, dtype=np.float64), top.shape), z.min(axis=-1))
    lo_m, hi_m = bottom.copy(), top.copy()
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo_m + hi_m)
        rej = rejected(mid)
        hi_m = np.where(rej, mid, hi_m)
        lo_m = np.where(rej, lo_m, mid)
    # hi_m is rejected (or the trivial top): the bound is <= hi_m; reporting hi_m is conservative.
    return hi_m


def control_variate_draws(z: np.ndarray, g: np.ndarray, g_mean: float, g_lo: float, g_hi: float,
                          z_hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z_i = z_i − β_i(g_i − ḡ) with a predictable β_i, and the per-draw upper limits u_i of Z_i.

    g: the control's value for each draw ([n], shared by every row of z [..., n]); ḡ its exact mean over the
    population the draws come from, [g_lo, g_hi] the range of its possible draw values. β_i is the least-squares
    slope of z on g over the draws before i (0 before two draws), clipped to ±MAX_CONTROL_COEF, so
    E[Z_i | past] = E[z_i] and Z_i <= z_hi + max(β_i(ḡ − g_lo), β_i(ḡ − g_hi)) =: u_i. Returns (Z, u, β).
    That needs z_i <= z_hi and g_i ∈ [g_lo, g_hi]: both are checked (TokenboundError), up to the rounding slack,
    within which Z_i is its exact value (<= u_i) up to rounding and is set to at most u_i.
    """
    z = np.asarray(z, dtype=np.float64)
    check_within(z, None, np.asarray(z_hi, dtype=np.float64)[..., None], "draws")
    check_within(g, g_lo, g_hi, "control variate")
    gc = np.asarray(g, dtype=np.float64) - g_mean
    k = np.arange(z.shape[-1], dtype=np.float64)  # draws before i
    s_g, s_gg = _shifted_cumsum(gc), _shifted_cumsum(gc * gc)
    s_z, s_zg = _shifted_cumsum(z), _shifted_cumsum(z * gc)
    safe_k = np.maximum(k, 1.0)
    cov = s_zg - s_z * s_g / safe_k
    var = s_gg - s_g * s_g / safe_k
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where((k >= 2) & (var > 0), cov / np.where(var > 0, var, 1.0), 0.0)
    beta = np.clip(beta, -MAX_CONTROL_COEF, MAX_CONTROL_COEF)
    values = z - beta * gc
    upper = np.asarray(z_hi, dtype=np.float64)[..., None] + np.maximum(beta * (g_mean - g_lo), beta * (g_mean - g_hi))
    return np.minimum(values, upper), upper, beta
