"""Betting confidence bound for the mean of bounded i.i.d. draws (Waudby-Smith & Ramdas 2023).

Source: I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by betting",
JRSS-B 86(1), 2024 (arXiv 2010.09686), §4 (capital processes, Ville's inequality) and §5.1 (predictable
plug-in bets). Stated for the one-sided upper bound used here:

Let Z_1, …, Z_n ∈ [0, 1] be i.i.d. with mean μ, and λ_1, …, λ_n ∈ [0, 1) predictable (λ_i a function of
Z_1..Z_{i−1} only). For a candidate m ∈ [0, 1] let K_t(m) = Π_{i<=t} (1 + λ_i (m − Z_i)) (every factor is
>= 1 − λ_i > 0). At m = μ, E[1 + λ_i(μ − Z_i) | Z_<i] = 1, so K_t(μ) is a non-negative martingale with
K_0 = 1 and Ville's inequality gives P(max_{t<=n} K_t(μ) >= 1/δ) <= δ. Each factor is increasing in m, so
the set {m : max_t K_t(m) < 1/δ} is an interval [0, U); hence with probability >= 1 − δ, μ <= U.

Bets (fixed-n predictable plug-in, WSR §5.1): λ_i = min(c, sqrt(2 ln(1/δ) / (n σ̂²_{i−1}))) with
σ̂²_{i−1} = (1/4 + Σ_{j<i} (Z_j − μ̂_j)²)/i, where μ̂_j = (1/2 + Σ_{k<j} Z_k)/j is the estimate available
before draw j. Any predictable choice is valid; this one makes the width ≈ σ·sqrt(2 ln(1/δ)/n) for small variances, without the 7 ln(2/δ)/(3(n−1))
range term of the empirical Bernstein bound — which is what makes block sampling cheap.
"""
from __future__ import annotations

import math

import numpy as np

MAX_BET = 0.9  # c in WSR's truncation; any constant in (0, 1) keeps every factor positive
_BISECTION_STEPS = 60


def predictable_bets(z: np.ndarray, delta: float) -> np.ndarray:
    """λ_i for each row of z ([..., n]): a function of the row's earlier values only."""
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[-1]
    counts = np.arange(1, n + 1, dtype=np.float64)  # i = 1..n (values before draw i: i−1 of them)
    prev_sum = np.concatenate([np.zeros(z.shape[:-1] + (1,)), np.cumsum(z, axis=-1)[..., :-1]], axis=-1)
    mu_hat = (0.5 + prev_sum) / counts  # estimate available before draw i (uses Z_<i)
    sq = (z - mu_hat) ** 2
    prev_sq = np.concatenate([np.zeros(z.shape[:-1] + (1,)), np.cumsum(sq, axis=-1)[..., :-1]], axis=-1)
    var_hat = (0.25 + prev_sq) / counts
    return np.minimum(MAX_BET, np.sqrt(2.0 * math.log(1.0 / delta) / (n * var_hat)))


def betting_upper(z: np.ndarray, delta: float) -> np.ndarray:
    """Upper confidence bound U on the mean of each row of z ∈ [0, 1] ([..., n] -> [...]), level 1 − δ."""
    z = np.asarray(z, dtype=np.float64)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    lam = predictable_bets(z, delta)
    threshold = math.log(1.0 / delta)

    def rejected(m: np.ndarray) -> np.ndarray:
        log_capital = np.cumsum(np.log1p(lam * (m[..., None] - z)), axis=-1)
        return log_capital.max(axis=-1) >= threshold

    lo = np.zeros(z.shape[:-1])
    hi = np.ones(z.shape[:-1])
    top_rejected = rejected(hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        rej = rejected(mid)
        hi = np.where(rej, mid, hi)
        lo = np.where(rej, lo, mid)
    # hi is rejected (or 1): the supremum of the non-rejected interval is <= hi; report hi (conservative).
    return np.where(top_rejected, hi, 1.0)
