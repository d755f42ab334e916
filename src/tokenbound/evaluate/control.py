"""Control variates for subsampling (docs/theory.md §5): a cheap per-position quantity known on the whole stream.

A sampled window's mean loss varies mostly because some source files are harder than others; a bigram model's
loss on the same window varies the same way and is known for *every* window without a forward pass. The
betting bound then certifies the mean of z_i − β_i(g_i − ḡ), whose spread is the part of the model's loss the
bigram cannot explain (7× less variance on the demo model).

Validity needs only that g is fixed before the draws are made (it is a function of the stored stream) and that
its population mean ḡ and draw range are exact: both are recomputed from the store by ``tokenbound verify``.

Specs: ``markov:K`` (order-K chain with add-0.1 smoothing fitted on the whole stream, K = 0 or 1: higher orders
memorise the stream and track the neural model's loss worse) or ``none``.
"""
from __future__ import annotations

import numpy as np

from ..bounds.stats import TokenStats
from ..data.context import ContextRule
from ..data.store import TokenStore
from ..errors import TokenboundError

DEFAULT_CONTROL = "markov:1"
# The whole stream's values (8 bytes/token) and, for markov:1, the bigram fit (~40 bytes/token) live in memory.
MAX_CONTROL_TOKENS = 1_000_000_000
CONTROL_SPECS = ("markov:0", "markov:1", "none")
_SMOOTHING = "add:0.1"


def check_control_spec(spec: str, num_tokens: int = 0) -> str:
    if spec not in CONTROL_SPECS:
        raise TokenboundError(f"expected one of {', '.join(CONTROL_SPECS)}, got {spec!r}", param="control_variate")
    if spec != "none" and num_tokens > MAX_CONTROL_TOKENS:
        raise TokenboundError(f"{spec} holds the whole stream in memory (up to ~40 bytes per token); the store "
                              f"has {num_tokens:,} tokens, pass --control-variate none", param="control_variate")
    return spec


def position_bits(store: TokenStore, spec: str) -> np.ndarray:
    """g_i in bits for every position of the store's stream (float64, length m)."""
    return stream_bits(np.asarray(store.tokens), store.doc_offsets, store.vocab_size, store.eot, spec)


def stream_bits(tokens: np.ndarray, doc_offsets: np.ndarray, vocab_size: int, eot: int, spec: str) -> np.ndarray:
    """g_i in bits for every position of a token stream (doc rule), for a ``markov:K`` spec."""
    check_control_spec(spec)
    if spec == "none":
        raise TokenboundError("'none' has no values", param="control_variate")
    order = int(spec.split(":")[1])
    if order == 0:
        counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64) + 0.1
        return -np.log2(counts[tokens] / counts.sum())
    from ..models.markov import MarkovModel

    model = MarkovModel.fit(tokens, doc_offsets, vocab_size, eot, order, _SMOOTHING)
    return -np.log2(model.true_token_probs(tokens, doc_offsets))


def draw_range(values: np.ndarray, sampler: str, rule: ContextRule) -> tuple[float, float]:
    """(min, max) of the control's mean over one draw's scored positions, over every possible draw."""
    if sampler == "token":
        return float(values.min()), float(values.max())
    if sampler != "block":
        raise TokenboundError(f"control variates need the token or block sampler, got {sampler!r}")
    w = rule.windows(values.size)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    means = (csum[w.end_scored] - csum[w.first_scored]) / w.num_scored
    return float(means.min()), float(means.max())


def with_control(stats: TokenStats, values: np.ndarray, spec: str) -> TokenStats:
    """A copy of `stats` carrying `values` (the control at every position of the stream) at its scored positions,
    with the population summary: spec, exact mean, and the range of one draw's mean over every possible draw."""
    lo, hi = draw_range(values, stats.meta["sampler"], ContextRule.parse(stats.meta["context_rule"]))
    # the exact mean lies in [lo, hi]; clipping only undoes rounding (a constant control: mean = lo = hi)
    mean = min(max(float(values.mean()), lo), hi)
    summary = {"spec": spec, "population_mean_bits": mean, "draw_min_bits": lo, "draw_max_bits": hi}
    return TokenStats(stats.positions, stats.prob, stats.rank, stats.entropy_bits, stats.draw,
                      meta={**stats.meta, "control_variate": summary}, control_bits=values[stats.positions])


def attach_control(stats: TokenStats, store: TokenStore, spec: str = DEFAULT_CONTROL) -> TokenStats:
    """`stats` with the control `spec` computed on the store it was scored on (unchanged for "none")."""
    if check_control_spec(spec) == "none":
        return stats
    if int(stats.meta["population_tokens"]) != store.num_tokens:
        raise TokenboundError(f"{store.path}: the statistics were scored on {stats.meta['population_tokens']} "
                              f"tokens, the store holds {store.num_tokens}")
    return with_control(stats, position_bits(store, spec), spec)


def check_control(stats: TokenStats, store: TokenStore) -> list[str]:
    """Differences between the stats' control variate and one recomputed from the store ([] if none or equal)."""
    if stats.control_bits is None:
        return []
    recorded = stats.meta["control_variate"]
    fresh = attach_control(stats, store, recorded["spec"])
    out = []
    for key in ("population_mean_bits", "draw_min_bits", "draw_max_bits"):
        if fresh.meta["control_variate"][key] != recorded[key]:
            out.append(f"control variate: {key} {recorded[key]!r} differs from the store's {fresh.meta['control_variate'][key]!r}")
    if not np.array_equal(fresh.control_bits, stats.control_bits):
        out.append("control variate: the per-position values differ from those recomputed from the store")
    return out
