"""Synthetic token sources whose next-token distribution given the realized prefix is known EXACTLY.

Each source draws a stream x_0 … x_{m−1} together with P_true(· | x_<i) for every position, so the true
risk R(h) = (1/m) Σ_i Σ_v P_true(v | x_<i)·(−log2 p_h(v | c_i)) of any fitted model can be computed
exactly (docs/theory.md §1, the target R(h)). Sampling and the exact conditional come from one loop: x_i is drawn from
P_true(· | x_<i) itself (marginalising any hidden state), which is the same process as running the
generative model forward.

Specs (``parse_source``), all parameters optional:
- ``markov:order=K,vocab=V,conc=C``   k-th order chain, transition rows ~ Dirichlet(C·1); the first k
                                      tokens condition on a prefix of k zeros.
- ``hmm:states=S,vocab=V,conc=C``     hidden Markov model; P_true is the forward filter's predictive.
- ``docs:chains=J,vocab=V,len=L,conc=C``  documents: each picks one of J first-order chains (uniform), starts
                                      from eot and ends at its eot (probability 1/L per token); P_true mixes
                                      the chains with their posterior given the document so far.
- ``spiky:vocab=V,frac=F,eps=E``      first-order chain: a fraction F of the states is near-deterministic
                                      (one successor w.p. 1 − E), the rest uniform — a high-variance loss.
- ``shuffle:vocab=V,copies=C``        rounds of C·V tokens, each a uniformly random arrangement of C copies of
                                      every id (drawn without replacement); P_true is the ids left in the
                                      round, in proportion to their copies left. Every id is exactly equally
                                      frequent over whole rounds, so a fitted unigram model ties them all:
                                      the source for top-k errors with exact ties (docs/theory.md §8).

Source parameters are drawn once from a seed (``make_source``); streams from each trial's own generator.
Non-document sources are one document (doc_offsets = [0]) with eot = 0 as the virtual start token.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TokenboundError

DEFAULTS: dict[str, dict[str, float]] = {
    "markov": {"order": 1, "vocab": 8, "conc": 0.5},
    "hmm": {"states": 4, "vocab": 8, "conc": 0.3},
    "docs": {"chains": 3, "vocab": 8, "len": 30, "conc": 0.3},
    "spiky": {"vocab": 8, "frac": 0.5, "eps": 0.01},
    "shuffle": {"vocab": 8, "copies": 1},
}
INTEGER_PARAMS = {"order", "vocab", "states", "chains", "copies"}


def parse_source(spec: str) -> tuple[str, dict[str, float]]:
    """'markov:order=2,vocab=8' -> ('markov', {order: 2, vocab: 8, conc: 0.5}); one-line error if malformed."""
    name, _, rest = str(spec).strip().partition(":")
    if name not in DEFAULTS:
        raise TokenboundError(f"unknown source {name!r}; expected one of {', '.join(DEFAULTS)}", param="source")
    params = dict(DEFAULTS[name])
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in params:
            raise TokenboundError(f"unknown parameter {item!r}; {name} takes {', '.join(params)}",
                                  param="source", value=spec)
        try:
            params[key] = int(value) if key in INTEGER_PARAMS else float(value)
        except ValueError:
            raise TokenboundError(f"{key} must be a number, got {value!r}", param="source", value=spec) from None
    _check(spec, name, params)
    return name, params


def _check(spec: str, name: str, p: dict[str, float]) -> None:
    if p["vocab"] < 2:
        raise TokenboundError("vocab must be >= 2", param="source", value=spec)
    if name in ("markov", "hmm", "docs") and not p["conc"] > 0:
        raise TokenboundError("conc must be > 0", param="source", value=spec)
    if name == "markov" and not 0 <= p["order"] <= 4:
        raise TokenboundError("order must be in [0, 4]", param="source", value=spec)
    if name == "hmm" and p["states"] < 1:
        raise TokenboundError("states must be >= 1", param="source", value=spec)
    if name == "docs" and (p["chains"] < 1 or p["len"] <= 1 or p["vocab"] < 3):
        raise TokenboundError("needs chains >= 1, len > 1 and vocab >= 3", param="source", value=spec)
    if name == "spiky" and not (0 <= p["frac"] <= 1 and 0 < p["eps"] < 1):
        raise TokenboundError("needs frac in [0, 1] and eps in (0, 1)", param="source", value=spec)
    if name == "shuffle" and p["copies"] < 1:
        raise TokenboundError("copies must be >= 1", param="source", value=spec)


@dataclass
class Stream:
    """One draw of a source: tokens, document starts and the exact next-token distribution per position."""

    tokens: np.ndarray       # int64 [m]
    doc_offsets: np.ndarray  # int64, starts with 0
    true_probs: np.ndarray   # float64 [m, V]: P_true(v | x_<i)


@dataclass
class Source:
    """A source with fixed parameters; ``sample(rng, m)`` draws a Stream."""

    name: str
    params: dict[str, float]
    vocab_size: int
    eot: int
    tables: dict[str, np.ndarray] = field(repr=False)

    @property
    def spec(self) -> str:
        return f"{self.name}:" + ",".join(f"{k}={v:g}" for k, v in self.params.items())

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "vocab_size": self.vocab_size, "eot": self.eot}

    def sample(self, rng: np.random.Generator, m: int) -> Stream:
        return {"markov": _sample_markov, "hmm": _sample_hmm, "docs": _sample_docs,
                "spiky": _sample_markov, "shuffle": _sample_shuffle}[self.name](self, rng, int(m))


def make_source(spec: str, seed: int) -> Source:
    """Draw the source's parameters (transition tables, ...) from `seed`."""
    name, p = parse_source(spec)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    v = int(p["vocab"])
    if name == "markov":
        k = int(p["order"])
        tables = {"trans": rng.dirichlet(np.full(v, p["conc"]), size=v ** k), "order": np.array(k)}
    elif name == "hmm":
        s = int(p["states"])
        tables = {"trans": rng.dirichlet(np.full(s, p["conc"]), size=s),
                  "emit": rng.dirichlet(np.full(v, p["conc"]), size=s), "init": np.full(s, 1.0 / s)}
    elif name == "docs":
        j, stop = int(p["chains"]), 1.0 / p["len"]
        # chain rows over V tokens; token 0 is eot: probability `stop` (none right after eot: no empty docs)
        body = rng.dirichlet(np.full(v - 1, p["conc"]), size=(j, v))
        trans = np.concatenate([np.full((j, v, 1), stop), body * (1 - stop)], axis=2)
        trans[:, 0, 0], trans[:, 0, 1:] = 0.0, body[:, 0]
        tables = {"chains": trans, "prior": np.full(j, 1.0 / j)}
    elif name == "shuffle":
        tables = {"copies": np.array(int(p["copies"]))}
    else:  # spiky
        spiky = rng.random(v) < p["frac"]
        trans = np.full((v, v), 1.0 / v)
        succ = rng.integers(0, v, v)
        trans[spiky] = p["eps"] / (v - 1)
        trans[np.flatnonzero(spiky), succ[spiky]] = 1 - p["eps"]
        tables = {"trans": trans, "order": np.array(1)}
    return Source(name, p, v, 0, tables)


def _sample_markov(src: Source, rng: np.random.Generator, m: int) -> Stream:
    trans, k, v = src.tables["trans"], int(src.tables["order"]), src.vocab_size
    cdf = np.cumsum(trans, axis=1)
    cdf[:, -1] = 1.0
    cdf_rows = cdf.tolist()  # Python lists: a bisect per step is far cheaper than a numpy call
    u = rng.random(m).tolist()
    ctx, tokens = 0, np.empty(m, dtype=np.int64)
    rows = np.empty(m, dtype=np.int64)
    modulus = v ** k
    bisect_right, last = bisect.bisect_right, v - 1
    for i in range(m):  # context = last k tokens as a base-v number, the most recent least significant
        rows[i] = ctx
        x = bisect_right(cdf_rows[ctx], u[i])
        x = x if x < last else last  # u may equal the rounded cdf; never step past the alphabet
        tokens[i] = x
        ctx = (ctx * v + x) % modulus if k else 0
    return Stream(tokens, np.zeros(1, dtype=np.int64), trans[rows])


def _sample_shuffle(src: Source, rng: np.random.Generator, m: int) -> Stream:
    v, c = src.vocab_size, int(src.tables["copies"])
    u = rng.random(m).tolist()
    probs = np.empty((m, v))
    tokens = np.empty(m, dtype=np.int64)
    left, total = [c] * v, c * v  # copies of each id not yet drawn in the current round
    for i in range(m):
        probs[i] = left
        probs[i] /= total
        target, x, acc = u[i] * total, 0, left[0]
        while acc <= target and x < v - 1:  # the first id whose cumulative count exceeds u·total
            x += 1
            acc += left[x]
        while left[x] == 0:  # only if rounding put u·total at the very top: the last id still left
            x -= 1
        tokens[i] = x
        left[x] -= 1
        total -= 1
        if total == 0:
            left, total = [c] * v, c * v
    return Stream(tokens, np.zeros(1, dtype=np.int64), probs)


def _sample_hmm(src: Source, rng: np.random.Generator, m: int) -> Stream:
    trans, emit, init = src.tables["trans"], src.tables["emit"], src.tables["init"]
    u = rng.random(m)
    belief = init.copy()  # P(state_i | x_<i)
    probs = np.empty((m, src.vocab_size))
    tokens = np.empty(m, dtype=np.int64)
    for i in range(m):
        pred = belief @ emit
        probs[i] = pred
        x = min(int(np.searchsorted(np.cumsum(pred), u[i] * pred.sum(), side="right")), src.vocab_size - 1)
        tokens[i] = x
        post = belief * emit[:, x]
        belief = post @ trans
        belief /= belief.sum()
    return Stream(tokens, np.zeros(1, dtype=np.int64), probs)


def _sample_docs(src: Source, rng: np.random.Generator, m: int) -> Stream:
    chains, prior = src.tables["chains"], src.tables["prior"]
    u = rng.random(m)
    probs = np.empty((m, src.vocab_size))
    tokens = np.empty(m, dtype=np.int64)
    weights, prev = prior.copy(), src.eot
    starts = [0]
    for i in range(m):
        rows = chains[:, prev, :]          # [J, V]: each chain's next-token row
        pred = weights @ rows
        probs[i] = pred
        x = min(int(np.searchsorted(np.cumsum(pred), u[i] * pred.sum(), side="right")), src.vocab_size - 1)
        tokens[i] = x
        if x == src.eot:                   # document ends: the next one draws its chain afresh
            weights, prev = prior.copy(), src.eot
            if i + 1 < m:
                starts.append(i + 1)
        else:
            weights = weights * rows[:, x]
            weights /= weights.sum()
            prev = x
    return Stream(tokens, np.asarray(starts, dtype=np.int64), probs)
