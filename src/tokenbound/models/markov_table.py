"""Contexts and count table of the k-th order Markov chain (models/markov.py): context keys and their counts.

Context rule ``doc:k`` (docs/design.md §3). The context of position i is ext[max(i − k, j) : i] where j is the
extended index of the last eot strictly before i (ext[−1] is the virtual eot): the last k tokens of the
document prefix, the eot that opens the document included. A context shorter than k tokens (the start
of a document) is LEFT-PADDED with the reserved value PAD = V, which no token has. A context is stored as
one integer key: key = Σ_{t=1..k} d_t·(V+1)^(t−1), d_t the t-th most recent context token (or PAD), so
the order-j suffix of a context (its last j tokens) is simply key mod (V+1)^j. Keys are below 2^62, which
bounds the order (``max_order``).

The model's parameters are the sparse table n(c, v) of order-k context/next-token counts, held as CSR rows
(``OrderTable``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..data.context import last_eot_before
from ..errors import TokenboundError

_MAX_KEY = 1 << 62


def context_keys(tokens: np.ndarray, doc_offsets: np.ndarray, order: int, vocab_size: int, eot: int,
                 positions: np.ndarray | None = None) -> np.ndarray:
    """Order-k context key of every position (or of `positions`) under the doc rule (module docstring)."""
    tokens = np.asarray(tokens)
    i = np.arange(len(tokens), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    j = last_eot_before(i, doc_offsets)
    key = np.zeros(i.shape, dtype=np.int64)
    base = np.int64(vocab_size + 1)
    weight = np.int64(1)
    for t in range(1, order + 1):
        idx = i - t
        digit = np.where(idx > j, np.asarray(tokens[np.maximum(idx, 0)], dtype=np.int64),
                         np.where(idx == j, eot, vocab_size))
        key += digit * weight
        weight *= base
    return key


@dataclass
class OrderTable:
    """Counts of one order as CSR rows: keys[r] has entries tok[ptr[r]:ptr[r+1]] with counts cnt[...]."""

    keys: np.ndarray
    ptr: np.ndarray
    tok: np.ndarray
    cnt: np.ndarray
    vocab_size: int

    @classmethod
    def build(cls, keys: np.ndarray, tok: np.ndarray, cnt: np.ndarray, vocab_size: int) -> "OrderTable":
        """Aggregate (key, tok, cnt) triples (any order, duplicates summed)."""
        o = np.lexsort((tok, keys))
        keys, tok, cnt = keys[o], tok[o], cnt[o]
        new = np.ones(keys.size, dtype=bool)
        new[1:] = (keys[1:] != keys[:-1]) | (tok[1:] != tok[:-1])
        starts = np.flatnonzero(new)
        cnt = np.add.reduceat(cnt, starts) if cnt.size else cnt
        keys, tok = keys[starts], tok[starts]
        row_new = np.ones(keys.size, dtype=bool)
        row_new[1:] = keys[1:] != keys[:-1]
        row_starts = np.flatnonzero(row_new)
        ptr = np.append(row_starts, keys.size).astype(np.int64)
        return cls(keys[row_starts], ptr, tok, cnt, vocab_size)

    @cached_property
    def totals(self) -> np.ndarray:
        return np.add.reduceat(self.cnt, self.ptr[:-1]) if self.cnt.size else np.zeros(0, np.int64)

    @cached_property
    def types(self) -> np.ndarray:
        return np.diff(self.ptr)

    @cached_property
    def _flat(self) -> np.ndarray:
        """row · V + tok of every entry: sorted, so one searchsorted finds any (row, token) pair."""
        row_of_entry = np.repeat(np.arange(self.keys.size, dtype=np.int64), self.types)
        return row_of_entry * self.vocab_size + self.tok

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, found mask) of each query key."""
        r = np.searchsorted(self.keys, keys)
        rc = np.minimum(r, max(self.keys.size - 1, 0))
        found = (r < self.keys.size) & (self.keys[rc] == keys) if self.keys.size else np.zeros(keys.shape, bool)
        return rc, found

    def count(self, rows: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """n(row, tok) for found rows (0 where the token never followed that context)."""
        flat = self._flat
        q = rows * self.vocab_size + tok
        pos = np.minimum(np.searchsorted(flat, q), max(flat.size - 1, 0))
        hit = flat[pos] == q if flat.size else np.zeros(q.shape, bool)
        return np.where(hit, self.cnt[pos] if flat.size else 0, 0)

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), V] count matrix of the given rows."""
        out = np.zeros((rows.size, self.vocab_size), dtype=np.float64)
        lengths = self.ptr[rows + 1] - self.ptr[rows]
        first = np.repeat(self.ptr[rows], lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[np.repeat(np.arange(rows.size), lengths), self.tok[first + within]] = self.cnt[first + within]
        return out


def check_shape(vocab_size: int, eot: int, order: int) -> None:
    if vocab_size < 2:
        raise TokenboundError(f"vocab size must be >= 2, got {vocab_size}")
    if not 0 <= eot < vocab_size:
        raise TokenboundError(f"eot id {eot} is outside the vocabulary [0, {vocab_size})")
    if order < 0:
        raise TokenboundError(f"must be >= 0, got {order}", param="order")
    limit = max_order(vocab_size)
    if order > limit:
        raise TokenboundError(f"at most {limit} for vocabulary {vocab_size} (a context is one "
                              f"integer key below (V+1)^order, which must fit in 62 bits)", param="order", value=order)


def max_order(vocab_size: int) -> int:
    """The largest order k whose context keys fit: (V+1)^k < 2^62 (module docstring).

    Found by multiplying up (at most 62 steps, since V+1 >= 3) rather than by evaluating (V+1)^order, which for
    an absurd order (10^8) is an exact integer of hundreds of millions of bits that takes minutes to compute.
    For a BPE-8192 vocabulary the limit is 4, for bytes (V = 257) 7.
    """
    k, weight = 0, 1
    while weight * (vocab_size + 1) < _MAX_KEY:
        weight *= vocab_size + 1
        k += 1
    return k
