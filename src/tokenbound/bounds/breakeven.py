"""Break-even data size: the smallest m at which a bound, at the measured statistics, drops below log2 V.

Every bound here is non-increasing in m with everything else fixed (the sample statistics, message bits,
δ, α): the Occam terms have the form c·sqrt(g(m)/m) or c·g(m)/m with g(m) = a + ln((n + m)/(δ n)) under
the "paper" δ split, and d/dm [g(m)/m] = (m/(n+m) − g(m))/m² < 0 because
g(m) >= ln(1/δ) + ln(1 + m/n) > m/(n + m) (ln(1 + x) >= x/(1 + x)); the subsampling shares δ·m/(n + m) grow
with m, so those terms shrink. Hence bisection over integers is exact (docs/theory.md §11).
"""
from __future__ import annotations

import math
from typing import Callable

# Beyond this the Occam terms are numerically zero; if the bound still is not below target, it never is.
MAX_TOKENS = 1e30


def break_even_tokens(bound_at: Callable[[float], float], target: float) -> int | None:
    """Smallest integer m >= 1 with bound_at(m) < target, or None if even m = 1e30 does not get there.

    `bound_at` must be non-increasing in m (see module doc). Uses doubling then integer bisection.
    """
    if not bound_at(MAX_TOKENS) < target:
        return None
    if bound_at(1.0) < target:
        return 1
    lo, hi = 1.0, 2.0  # invariant: bound_at(lo) >= target > bound_at(hi)
    while not bound_at(hi) < target:
        lo, hi = hi, hi * 2.0
    if hi > 2.0 ** 52:  # beyond exact integers in float: report the doubling bracket's end
        return int(hi)
    lo_i, hi_i = int(lo), int(hi)
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        if bound_at(float(mid)) < target:
            hi_i = mid
        else:
            lo_i = mid
    return hi_i


def azuma_break_even_closed_form(empirical: float, subsample: float, loss_range: float, prior_bits: float,
                                 delta_main: float, target: float) -> int | None:
    """Closed form for Theorem A with δ1 fixed: smallest integer m with
    R̂ + s + Δ·sqrt((L ln 2 + ln(1/δ1))/(2m)) < target, i.e. m > Δ²(L ln 2 + ln(1/δ1)) / (2 (target − R̂ − s)²).
    None when R̂ + s >= target (the gap can never close)."""
    gap = target - empirical - subsample
    if gap <= 0:
        return None
    m_star = loss_range ** 2 * (prior_bits * math.log(2.0) + math.log(1.0 / delta_main)) / (2.0 * gap ** 2)
    return max(1, math.floor(m_star) + 1)
