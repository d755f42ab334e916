"""Samplers (docs/theory.md §5 "Subsampling"): which positions a scoring run looks at, drawn from a seed.

Every sampler draws n i.i.d. *draws* with ``np.random.default_rng(seed)`` (independent of the data), and a
plan is recorded by name, parameters and seed, so it can be rebuilt bit for bit:
- ``token``     n positions uniform with replacement from [0, m); each draw scores one position.
- ``block``     n windows of the (strided) context rule with replacement, with probability proportional to
                the number of positions each window scores. Drawn as "the window that scores a uniform
                position", which is exactly that distribution, so the mean loss of a drawn window is an
                unbiased estimate of the token mean. A full rule uses its stride-1 windows.
- ``document``  n documents uniform with replacement; every position of the document is scored, in windows
                of the ``doc`` rule laid over the document alone (per-document mean loss is the data point of
                the document-level baseline bound).
- ``all``       every window of the rule exactly once, in order (n = the number of windows): the scored positions
                are all m positions, each once, so the empirical risk is exact and the certificate has no
                subsampling term (docs/theory.md §5, "exhaustive"). With a strided rule ``doc:B/s`` one forward
                pass scores s tokens; with a full rule every position is its own window.

``plan_rows`` turns draws into model input rows: ext[in_start:in_end] scores targets [score_from, score_to)
(score_to == in_end + 1; target t is predicted at row offset t − 1 − in_start).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TokenboundError
from .context import ContextRule

SAMPLERS = ("token", "block", "document", "all")


@dataclass(frozen=True)
class SamplingPlan:
    """n draws of a sampler. ``units[k]`` is draw k's position (token), window index (block) or document."""

    sampler: str
    seed: int
    units: np.ndarray
    population: int  # positions (token), windows (block) or documents (document) drawn from

    @property
    def n(self) -> int:
        return int(self.units.shape[0])

    def describe(self) -> dict[str, Any]:
        unit = {"token": "position", "block": "window", "document": "document", "all": "window"}[self.sampler]
        if self.sampler == "all":
            return {"sampler": self.sampler, "seed": self.seed, "n": self.n, "unit": unit,
                    "population": self.population, "weights": "every window once", "replacement": False}
        return {"sampler": self.sampler, "seed": self.seed, "n": self.n, "unit": unit,
                "population": self.population,
                "weights": "scored positions per window" if self.sampler == "block" else "uniform",
                "replacement": True}


@dataclass(frozen=True)
class Rows:
    """Model input rows (int64 arrays, one entry per row); see the module docstring."""

    in_start: np.ndarray
    in_end: np.ndarray
    score_from: np.ndarray
    score_to: np.ndarray
    draw: np.ndarray

    def __len__(self) -> int:
        return int(self.in_start.shape[0])

    @property
    def num_scored(self) -> int:
        return int((self.score_to - self.score_from).sum())


def check_sampler(sampler: str, rule: ContextRule) -> None:
    if sampler not in SAMPLERS:
        raise TokenboundError(f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}", param="sampler")
    if sampler == "document" and not rule.is_doc:
        raise TokenboundError(f"needs a doc context rule (documents scored alone), got {rule}",
                              param="sampler", value="document")


def draw_plan(sampler: str, n: int, seed: int, rule: ContextRule, num_tokens: int,
              doc_offsets: np.ndarray) -> SamplingPlan:
    """Draw the plan; deterministic given (sampler, n, seed, rule, stream size, documents)."""
    check_sampler(sampler, rule)
    if int(n) != n or n <= 0:
        raise TokenboundError(f"must be a positive integer, got {n}", param="samples")
    if num_tokens <= 0:
        raise TokenboundError("the token store is empty: nothing to score")
    rng = np.random.default_rng(seed)
    if sampler == "all":
        population = rule.num_windows(0, num_tokens)
        if int(n) != population:
            raise TokenboundError(f"the 'all' sampler scores each of the rule's {population:,} windows "
                                  f"once, so n must be {population:,}, got {n}", param="samples")
        return SamplingPlan(sampler, int(seed), np.arange(population, dtype=np.int64), population)
    if sampler == "token":
        units, population = rng.integers(0, num_tokens, size=n, dtype=np.int64), num_tokens
    elif sampler == "block":
        # The window scoring a uniform position is drawn with probability (its scored count) / m.
        positions = rng.integers(0, num_tokens, size=n, dtype=np.int64)
        units, population = rule.window_of(positions), rule.num_windows(0, num_tokens)
    else:
        population = int(len(doc_offsets))
        units = rng.integers(0, population, size=n, dtype=np.int64)
    return SamplingPlan(sampler, int(seed), units, population)


def plan_rows(plan: SamplingPlan, rule: ContextRule, draws: slice | range, num_tokens: int,
              context_offsets: np.ndarray, store_doc_offsets: np.ndarray | None = None) -> Rows:
    """Rows for the draws in `draws` (a contiguous range of draw ids).

    `context_offsets` are the eot-delimited document starts that define the ``doc`` rule's contexts;
    `store_doc_offsets` (default: the same) are the documents the ``document`` sampler draws.
    """
    ids = np.arange(plan.n, dtype=np.int64)[draws]
    units = plan.units[ids]
    if plan.sampler == "token":
        start, end = rule.contexts(units, context_offsets)
        return Rows(start, end, units.copy(), units + 1, ids)
    if plan.sampler in ("block", "all"):
        w = rule.window_bounds(units, 0, num_tokens)
        return Rows(w.start, w.end, w.first_scored, w.end_scored, ids)
    docs = store_doc_offsets if store_doc_offsets is not None else context_offsets
    parts = []
    for k, d in zip(ids, units):
        lo = int(docs[d])
        hi = int(docs[d + 1]) if d + 1 < len(docs) else num_tokens
        w = rule.windows(hi, lo=lo)  # windows over the document alone; eots inside split it via segments
        parts.append((w.start, w.end, w.first_scored, w.end_scored, np.full(len(w), k, dtype=np.int64)))
    return Rows(*(np.concatenate([p[c] for p in parts]) for c in range(5)))
