"""Each bound method evaluated on sampled statistics: one typed result per method (schema.MethodBound) plus a
``bound_at(m)`` function (the same arithmetic at another population size) for the break-even size.

Every method reports ``bound_bits_per_token`` = empirical + complexity + subsample (``terms``), the α it
chose (paid for with log2 |α grid| bits in ``extra_bits``), its δ shares and its itemised prior bits.

Choices and the subsampling δ. The prior pays for choosing α (and the method, and λ) in the martingale part.
The subsampling statements are separate events, one per (α, method) — and per λ for the variance-adaptive
method, whose subsampled quantity z(λ) depends on λ: reporting the one at a data-dependent choice needs all of
them at once, so each gets δ_subsample / `subsample_choices` (= |α grid| · #methods without a pilot, #methods
with one), further divided by the number of λ values evaluated for the variance-adaptive method (K_λ without
a pilot, 1 with one), and a union bound brings the total back to δ_subsample (docs/theory.md §5).

Both headline methods estimate their subsampled mean with the same confidence machinery (`ci`: Hoeffding,
Maurer–Pontil, their best, or betting with the control variate; subsampling.upper_mean), each from its own
δ share; `azuma_method` with ci "hoeffding" is the seed paper's Theorem A + Hoeffding (docs/theory.md §5).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .budget import delta_shares
from .martingale import azuma_bound_from_draws
from .schema import LossRange, MethodBound, Terms, VarianceAdaptiveBound
from .smoothing import loss_range_bits
from .subsampling import ControlVariate, draw_means, upper_mean
from .variance import penalized_losses, variance_adaptive_bound_from_draws

BoundAt = Callable[[float], float]


def prior_bits_total(items: dict[str, float]) -> float:
    """L(h): the sum of the itemised prior bits, added in insertion order (deterministic rounding)."""
    total = 0.0
    for value in items.values():
        total += value
    return total


def _range_entry(l_min, l_max, rng, i: int) -> LossRange:
    return LossRange(float(l_min[i]), float(l_max[i]), float(rng[i]))


def _shares(delta: float, split, num_draws: int, m: float, subsample_choices: int,
            exhaustive: bool) -> dict[str, float]:
    shares = delta_shares(delta, split, num_draws, m, exhaustive=exhaustive)
    return {k: (v if k == "main" else v / subsample_choices) for k, v in shares.items()}


def azuma_method(losses: np.ndarray, *, draw: np.ndarray, num_draws: int, alpha_grid: np.ndarray | None,
                 vocab_size: int | None, prior_items: dict[str, float], delta: float, split, num_units: float,
                 subsample_choices: int = 1, exhaustive: bool = False,
                 projected_draws: int | None = None, ci: str | None = None,
                 control: ControlVariate | None = None) -> tuple[MethodBound, BoundAt]:
    """Theorem A + a subsampling confidence bound for each row of `losses` ([A, N]); the best row is reported.

    Every argument after `losses` is keyword-only. `ci` None or "hoeffding": Hoeffding on the full range (the
    seed paper's; the result does not name it when None, as for top-k and the document-level baseline).
    Otherwise `ci` is one of subsampling.CI_METHODS and `control` (betting only) a ControlVariate: the
    subsampled mean is bounded by subsampling.upper_mean, as for Theorem B (docs/theory.md §5); the result
    records "subsample_ci" and "control_variate".

    With `alpha_grid` None the rows are 0-1 losses (Δ = 1, range [0, 1]; used for top-k). `num_units` is
    m (tokens; documents for the document-level baseline), `num_draws` is n. `exhaustive`: the draws are
    every unit exactly once, so the sample mean is exact (no subsampling term, all of δ to Theorem A).
    `projected_draws`: score a pilot — the subsampling term is forecast for `projected_draws` certifying draws
    (Hoeffding's does not depend on the data; the others: subsampling.upper_mean's `forecast_draws`); used only
    to choose α (certificate.py).
    """
    if alpha_grid is None:
        l_min, l_max, rng = np.zeros(len(losses)), np.ones(len(losses)), np.ones(len(losses))
    else:
        l_min, l_max, rng = loss_range_bits(alpha_grid, vocab_size)
    draws = draw_means(losses, draw, num_draws)
    prior = prior_bits_total(prior_items)

    def evaluate(rows: np.ndarray, m: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        n = projected_draws or num_draws
        shares = _shares(delta, split, n, m, subsample_choices, exhaustive)
        if ci in (None, "hoeffding") or exhaustive:
            return azuma_bound_from_draws(draws[rows], rng[rows], prior, shares["main"], shares["subsample"],
                                          m, None if exhaustive else n), shares
        res = azuma_bound_from_draws(draws[rows], rng[rows], prior, shares["main"], shares["subsample"], m, None)
        mean, up = upper_mean(draws[rows], l_min[rows], l_max[rows], shares["subsample"], ci, control=control,
                              forecast_draws=projected_draws)
        res["subsample"] = up - mean
        res["bound"] = res["empirical"] + res["complexity"] + res["subsample"]
        return res, shares

    res, shares = evaluate(np.arange(len(losses)), num_units)
    i = int(np.argmin(res["bound"]))  # first minimum: deterministic
    result = MethodBound(
        bound_bits_per_token=float(res["bound"][i]),
        terms=Terms(empirical_bits=float(res["empirical"][i]), complexity_bits=float(res["complexity"][i]),
                    subsample_bits=float(res["subsample"][i])),
        alpha=None if alpha_grid is None else float(alpha_grid[i]),
        loss_range_bits=_range_entry(l_min, l_max, rng, i),
        prior_bits=prior, extra_bits=dict(prior_items), delta_shares=shares,
        subsample_choices=int(subsample_choices), num_units=float(num_units), sample_size=int(num_draws),
        per_alpha_bound_bits=tuple(float(b) for b in res["bound"]),
        subsample_ci=None if ci is None else "exact" if exhaustive else ci,
        control_variate=None if ci is None else control is not None and not exhaustive)
    return result, lambda m: float(evaluate(np.array([i]), m)[0]["bound"][0])


def variance_adaptive_method(losses: np.ndarray, *, entropy_bits: np.ndarray, draw: np.ndarray, num_draws: int,
                             alpha_grid: np.ndarray, vocab_size: int, prior_items: dict[str, float], delta: float,
                             split, num_tokens: float, lambda_grid: np.ndarray, ci: str,
                             subsample_choices: int = 1, exhaustive: bool = False,
                             control: ControlVariate | None = None,
                             projected_draws: int | None = None) -> tuple[VarianceAdaptiveBound, BoundAt]:
    """The variance-adaptive bound (variance.py) minimised over the α and λ grids (both paid for).

    Every argument after `losses` is keyword-only. Centre ĉ_i = the model's predictive entropy clipped to
    [L_min(α), L_max(α)]: predictable (a function of the context and the model only) and inside the loss
    range, as the proof requires. One subsampling statement per (α, λ): each gets δ2 / (`subsample_choices`
    · K_λ). `projected_draws`: score a pilot — the subsampling term is forecast for that many certifying
    draws (subsampling.upper_mean's `forecast_draws`).
    """
    l_min, l_max, rng = loss_range_bits(alpha_grid, vocab_size)
    centre = np.clip(entropy_bits[None, :], l_min[:, None], l_max[:, None])
    loss_draws = draw_means(losses, draw, num_draws)
    penalized = np.stack([draw_means(penalized_losses(losses, centre, rng, lam), draw, num_draws)
                          for lam in lambda_grid], axis=1)                               # [A, K, n]
    sq_dev = draw_means((losses - centre) ** 2, draw, num_draws).mean(axis=-1)
    prior = prior_bits_total(prior_items)
    choices = subsample_choices * len(lambda_grid)

    def evaluate(rows: np.ndarray, m: float):
        shares = _shares(delta, split, projected_draws or num_draws, m, choices, exhaustive)
        return variance_adaptive_bound_from_draws(penalized[rows], loss_draws[rows], l_min[rows], l_max[rows],
                                                  rng[rows], prior, shares, m, lambda_grid,
                                                  "exact" if exhaustive else ci, None if exhaustive else control,
                                                  forecast_draws=projected_draws), shares

    res, shares = evaluate(np.arange(len(alpha_grid)), num_tokens)
    i, k = (int(j) for j in np.unravel_index(int(np.argmin(res["bound"])), res["bound"].shape))
    occam, variance = float(res["occam"][i, k]), float(res["variance"][i, k])
    result = VarianceAdaptiveBound(
        bound_bits_per_token=float(res["bound"][i, k]),
        terms=Terms(empirical_bits=float(res["empirical"][i]), complexity_bits=occam + variance,
                    subsample_bits=float(res["subsample"][i, k]), occam_bits=occam, variance_bits=variance),
        alpha=float(alpha_grid[i]), lambda_=float(lambda_grid[k]), mean_sq_deviation_bits2=float(sq_dev[i]),
        subsample_ci="exact" if exhaustive else ci, control_variate=control is not None and not exhaustive,
        loss_range_bits=_range_entry(l_min, l_max, rng, i),
        prior_bits=prior, extra_bits=dict(prior_items), delta_shares=shares,
        subsample_choices=int(choices), num_units=float(num_tokens), sample_size=int(num_draws),
        per_alpha_bound_bits=tuple(float(b) for b in res["bound"].min(axis=1)))
    return result, lambda m: float(evaluate(np.array([i]), m)[0]["bound"].min())
