"""Re-scoring a certificate's draws with its model (`tokenbound verify`; docs/scoring.md "Re-scoring").

A certificate is only as honest as its statistics: the bounds recompute from ``tokenstats.npz``, so statistics
edited after scoring (probabilities raised, the file's sha256 and the certificate recomputed to match) would
otherwise pass. ``rescore_stats`` therefore

1. rebuilds the sampling plan from the statistics' own recorded sampler, context rule, number of draws and
   seed (``evaluate.score.scoring_plan``), checks its hash against the recorded ``plan_sha256``, and checks that
   the stored positions and draw ids are exactly the targets of every draw's rows (no forward pass needed);
2. re-scores a random subset of the draws with the model, feeding it exactly the rows the scorer fed it
   (``data.sampling.plan_rows`` and ``evaluate.forward.score_rows``, the scorer's own functions), and compares
   prob, rank and entropy at every position of those draws.

The subset is drawn from fresh operating-system randomness (``secrets``), never from anything in the
certificate, so whoever produced the certificate cannot know which draws will be checked: tampering with a
fraction f of the draws escapes k re-scored draws with probability (1 − f)^k at most. The seed is reported so
that a failure can be reproduced (``rescore_seed``).

Tolerance (``RESCORE_TOL_BITS``, 1e-4 bits): |log2 p_stored − log2 p_recomputed| and |H_stored − H_recomputed|
at most that many bits, and equal ranks, or, where they differ, a stored rank that a near-tie within twice the
tolerance allows (the row is re-run alone and every token's log-probability compared). The smoothed loss
−log2((1 − α)p + α/V) moves by at most as much as log2 p does, so edits inside the tolerance move the certified
bound by at most about the tolerance per token. Re-scoring on the device and dtype that scored differs only by
float32 rounding, because the re-scored rows are batched (padded) differently: docs/scoring.md gives the measured
size. Another device needs a looser tolerance (``tol_bits``).
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bounds.stats import TokenStats
from ..data.context import ContextRule
from ..data.sampling import plan_rows
from ..data.store import TokenStore
from ..errors import TokenboundError
from .forward import build_batch, score_rows
from .score import scoring_plan
from .shards import plan_sha256

DEFAULT_RESCORE = 32
RESCORE_TOL_BITS = 1e-4
# rank disagreements re-examined one row at a time for near-ties (more than this many fail outright)
MAX_RANK_RECHECKS = 64


@dataclass
class RescoreResult:
    """What one re-score checked: draws re-scored (sorted ids), of how many, the seed, the first mismatch."""

    key: str
    draws: np.ndarray
    num_draws: int
    seed: int
    positions: int
    problems: list[str]
    max_diff_bits: float = 0.0

    def summary(self) -> str:
        ids = self.draws.tolist()
        which = f"draws {ids}; " if len(ids) <= 16 else ""
        return (f"{self.key}: re-scored {len(ids)} of {self.num_draws} draws ({self.positions} positions; {which}"
                f"rescore seed {self.seed}); largest difference {self.max_diff_bits:.2e} bits")


def parse_rescore(value: str | int) -> int | None:
    """``--rescore`` N | all (None) | 0; anything else is a one-line error naming the flag."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or (isinstance(value, float) and not float(value).is_integer()):
        raise TokenboundError(f"expected a number of draws >= 0 or 'all', got {value!r}", param="rescore")
    return n


def check_count(count: int | None) -> int | None:
    """A number of draws to re-score: None (all) or an integer >= 0; a one-line error otherwise."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0):
        raise TokenboundError(f"expected a number of draws >= 0 or None (all), got {count!r}", param="rescore")
    return count


def check_tolerance(tol_bits: float) -> float:
    try:
        tol = float(tol_bits)
    except (TypeError, ValueError):
        tol = -1.0
    if not (tol >= 0 and math.isfinite(tol)):
        raise TokenboundError(f"must be a finite number of bits >= 0, got {tol_bits!r}", param="rescore_tol")
    return tol


def fresh_seed() -> int:
    """64 bits of operating-system randomness: unpredictable to whoever produced the certificate."""
    return secrets.randbits(64)


def choose_draws(num_draws: int, count: int | None, seed: int) -> np.ndarray:
    """`count` distinct draw ids out of `num_draws` (all when None or more than there are), sorted."""
    if count is None or count >= num_draws:
        return np.arange(num_draws, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_draws, size=count, replace=False)).astype(np.int64)


def _draw_count(stats: TokenStats, key: str) -> int:
    n = stats.meta.get("num_draws", stats.num_draws)
    if int(n) != stats.num_draws:
        raise TokenboundError(f"{key}: meta num_draws {n} but the statistics hold {stats.num_draws} draws")
    return int(n)


def check_plan(stats: TokenStats, store: TokenStore, key: str = "stats"):
    """Rebuild the plan from the statistics' meta; problems if it or any draw's positions differ.

    Returns (problems, plan, rule, context_offsets).
    """
    meta = stats.meta
    rule = ContextRule.parse(meta["context_rule"])
    n = _draw_count(stats, key)
    plan, context_offsets = scoring_plan(store, rule, meta["sampler"], n, int(meta["seed"]))
    problems = []
    if meta.get("plan_sha256") is not None and plan_sha256(plan.units) != meta["plan_sha256"]:
        problems.append(f"{key}: the sampling plan rebuilt from seed {meta['seed']} does not hash to the recorded "
                        f"plan_sha256")
    rows = plan_rows(plan, rule, range(plan.n), store.num_tokens, context_offsets, store.doc_offsets)
    counts = rows.score_to - rows.score_from
    targets = np.repeat(rows.score_from - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
    draws = np.repeat(rows.draw, counts)
    if targets.shape != stats.positions.shape or not np.array_equal(targets, stats.positions) \
            or not np.array_equal(draws, stats.draw):
        bad = _first_difference(targets, stats.positions, draws, stats.draw)
        problems.append(f"{key}: the stored positions are not the ones the recorded sampler, rule and seed give "
                        f"({bad})")
    return problems, plan, rule, context_offsets


def _rank_interval(model: Any, store: TokenStore, rows, rule: ContextRule, draw: int, position: int, tol_bits: float,
                   device: str, id_ties: bool) -> tuple[int, int]:
    """The ranks the true token at `position` can have when every log-probability may move by `tol_bits`: the
    smallest counts only tokens above it by more than the tolerance, the largest every token within it too."""
    import torch

    k = int(np.flatnonzero((rows.draw == draw) & (rows.score_from <= position) & (position < rows.score_to))[0])
    ids, segs, _ = build_batch(store.tokens, store.eot, rows, np.array([k]), rule.is_doc)
    with torch.no_grad():
        lp = model.log_probs(torch.from_numpy(ids).to(device), None if segs is None else
                             torch.from_numpy(segs).to(device))
    x = lp[0, position - 1 - int(rows.in_start[k])].to(torch.float64)
    logp = (x - torch.logsumexp(x, 0)).cpu().numpy() / math.log(2.0)
    return rank_interval(logp, int(store.tokens[position]), tol_bits, id_ties)


def rank_interval(logp_bits: np.ndarray, true: int, tol_bits: float, id_ties: bool = True) -> tuple[int, int]:
    """(lowest, highest) rank of token `true` (docs/scoring.md) when log-probabilities within `tol_bits` of its
    own may have been ordered either way by float rounding. Exact ties are not ambiguous: they are ordered by id
    (``id_ties``; statistics scored before that rule counted none of them)."""
    d = np.asarray(logp_bits, dtype=np.float64) - float(logp_bits[true])
    others = np.arange(d.size) != true
    exact_lower = others & (d == 0) & (np.arange(d.size) < true)
    exact_higher = others & (d == 0) & (np.arange(d.size) > true)
    lo = 1 + int((others & (d > tol_bits)).sum()) + (int(exact_lower.sum()) if id_ties else 0)
    hi = 1 + int((others & (d >= -tol_bits)).sum()) - (int(exact_higher.sum()) if id_ties else 0)
    return lo, hi


def _first_difference(targets, positions, draws, stored_draws) -> str:
    k = min(targets.size, positions.size)
    neq = np.flatnonzero((targets[:k] != positions[:k]) | (draws[:k] != stored_draws[:k]))
    if neq.size:
        i = int(neq[0])
        return (f"entry {i}: stored draw {int(stored_draws[i])} position {int(positions[i])}, expected draw "
                f"{int(draws[i])} position {int(targets[i])}")
    return f"{positions.size} stored positions, {targets.size} expected"


def rescore_stats(model: Any, stats: TokenStats, store: TokenStore, count: int | None = DEFAULT_RESCORE, *,
                  key: str = "stats", seed: int | None = None, tol_bits: float = RESCORE_TOL_BITS,
                  device: str = "cpu", batch_size: int = 8) -> RescoreResult:
    """Check the plan of `stats` and re-score `count` random draws (None: all) with `model` (module docstring)."""
    tol = check_tolerance(tol_bits)
    check_count(count)
    seed = fresh_seed() if seed is None else int(seed)
    if int(stats.meta["vocab_size"]) != int(model.vocab_size):
        raise TokenboundError(f"{key}: scored with a vocabulary of {stats.meta['vocab_size']}, the model has "
                              f"{model.vocab_size}")
    problems, plan, rule, context_offsets = check_plan(stats, store, key)
    chosen = choose_draws(plan.n, count, seed)
    result = RescoreResult(key, chosen, plan.n, seed, 0, problems)
    if problems or chosen.size == 0:
        return result
    rows = plan_rows(plan, rule, chosen, store.num_tokens, context_offsets, store.doc_offsets)
    fresh = score_rows(model.to(device), store.tokens, store.eot, rows, use_segments=rule.is_doc,
                       batch_size=batch_size, device=device)
    mask = np.isin(stats.draw, chosen)
    result.positions = int(mask.sum())
    stored = {"prob": stats.prob[mask], "rank": stats.rank[mask], "entropy_bits": stats.entropy_bits[mask],
              "positions": stats.positions[mask], "draw": stats.draw[mask]}
    if not (np.array_equal(stored["positions"], fresh.positions) and np.array_equal(stored["draw"], fresh.draw)):
        result.problems.append(f"{key}: re-scored rows do not line up with the stored positions (scorer changed?)")
        return result
    with np.errstate(divide="ignore"):
        d_logp = np.abs(np.log2(stored["prob"]) - np.log2(fresh.prob))
    both_zero = (stored["prob"] == 0) & (fresh.prob == 0)
    d_logp = np.where(both_zero, 0.0, d_logp)
    d_ent = np.abs(stored["entropy_bits"] - fresh.entropy_bits)
    bad_p = ~(d_logp <= tol)  # NaN (one of them 0) counts as a mismatch
    bad_r = stored["rank"] != fresh.rank
    cap = MAX_RANK_RECHECKS if "rank_rule" in stats.meta else None  # older statistics: ties ranked otherwise
    for i in np.flatnonzero(bad_r & ~bad_p)[:cap]:  # a near-tie may reorder under float rounding
        lo, hi = _rank_interval(model, store, rows, rule, int(fresh.draw[i]), int(fresh.positions[i]), 2 * tol,
                                device, id_ties="rank_rule" in stats.meta)
        bad_r[i] = not lo <= int(stored["rank"][i]) <= hi
    bad_e = ~(d_ent <= tol)
    finite = np.concatenate([d_logp[np.isfinite(d_logp)], d_ent])
    result.max_diff_bits = float(finite.max()) if finite.size else 0.0
    bad = bad_p | bad_r | bad_e
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"{key}: draw {int(fresh.draw[i])}, stream position {int(fresh.positions[i])}"
        if bad_p[i]:
            what = f"prob stored {float(stored['prob'][i])!r} vs recomputed {float(fresh.prob[i])!r}"
        elif bad_r[i]:
            what = f"rank stored {int(stored['rank'][i])} vs recomputed {int(fresh.rank[i])}"
        else:
            what = (f"entropy_bits stored {float(stored['entropy_bits'][i])!r} vs recomputed "
                    f"{float(fresh.entropy_bits[i])!r}")
        result.problems.append(f"{where}: {what} (tolerance {tol:g} bits; {int(bad.sum())} of {bad.size} "
                               f"re-scored positions differ; rescore seed {seed})")
    return result


__all__ = ["DEFAULT_RESCORE", "RESCORE_TOL_BITS", "RescoreResult", "check_plan", "choose_draws", "parse_rescore",
           "rescore_stats"]
