"""Tuples of symbols coded as one ANS symbol: the layout behind a symbol stream's tuple size m (docs/compression.md).

constriction's decoder costs about the same per *coded* symbol whatever the alphabet (one call through its model
and a binary search over the CDF), and it holds the GIL. Coding m consecutive symbols as one symbol of the
product alphabet (r^m letters, r the distinct symbols present) divides the number of coder steps by m. The model
of a tuple is the product of the stream's own symbol counts, which the stream header already carries, so the
header does not grow and the payload stays within a hair of n·H(empirical): constriction gives every letter at
least one of its 2^24 probability units, which costs at most r^m / (2^24 ln 2) bits per tuple, and
``tuple_size`` keeps that below ``OVERHEAD_BUDGET`` of the stream's entropy.

Tuple t of the stream is symbols [m·t, m·t + m) (first symbol most significant: index = Σ c_j r^(m−1−j) over
the compact indices c_j); the n mod m symbols after the last whole tuple are coded one by one with the plain
symbol model.
"""
from __future__ import annotations

import math

import numpy as np

# letters of the tuple alphabet at most: its CDF stays in L1 and the binary search short
MAX_TUPLE_ALPHABET = 1 << 12
# worst-case payload cost of the tuple model's probability floor, as a fraction of n·H(empirical)
OVERHEAD_BUDGET = 2.0 ** -15
PROBABILITY_UNITS = 1 << 24  # constriction's default precision


def tuple_size(counts: np.ndarray) -> int:
    """The largest m with r^m <= MAX_TUPLE_ALPHABET whose worst-case overhead fits OVERHEAD_BUDGET (1 = none).

    The tuple model's floor takes at most r^m of the 2^24 probability units from the likely letters, i.e. costs at
    most r^m / (2^24 ln 2) bits per tuple, against m·H bits of content (H in bits per symbol).
    """
    counts = np.asarray(counts, dtype=np.float64)
    r = counts.size
    if r < 2:
        return 1
    n = counts.sum()
    h = float(-(counts * np.log2(counts / n)).sum() / n)
    m = 1
    while (r ** (m + 1) <= MAX_TUPLE_ALPHABET
           and r ** (m + 1) <= OVERHEAD_BUDGET * PROBABILITY_UNITS * math.log(2) * (m + 1) * h):
        m += 1
    return m


def tuple_probabilities(counts: np.ndarray, m: int) -> np.ndarray:
    """Unnormalised probabilities of the r^m tuples: products of the symbol frequencies, first symbol major.

    Every operation is one correctly rounded float64 multiplication, so encoder and decoder get the same bits.
    """
    p = np.asarray(counts, dtype=np.float64) / float(np.sum(counts))
    out = p
    for _ in range(m - 1):
        out = np.multiply.outer(out, p).ravel()
    return out


def tuple_indices(compact: np.ndarray, r: int, m: int) -> np.ndarray:
    """int32 index of each tuple of `compact` (length a multiple of m, values in [0, r))."""
    c = compact.reshape(-1, m)
    idx = c[:, 0].astype(np.int32)
    for j in range(1, m):
        idx *= r
        idx += c[:, j]
    return idx


def tuple_digits(r: int, m: int) -> np.ndarray:
    """(m, r^m) array: row j holds the j-th compact symbol of every tuple index."""
    return np.indices((r,) * m, dtype=np.int64).reshape(m, -1)


def tuple_table(values: np.ndarray, m: int) -> np.ndarray:
    """The m output values of every tuple index, one opaque item of m·itemsize bytes per tuple.

    ``np.take(table, idx, out=out_block.view(table.dtype))`` then writes whole tuples in one pass.
    """
    rows = np.ascontiguousarray(values[tuple_digits(values.size, m)].T)
    return rows.view(np.dtype((np.void, m * values.itemsize))).reshape(-1)


def marginal_counts(tuple_counts: np.ndarray, r: int, m: int) -> np.ndarray:
    """Counts of each symbol over all tuples, from the counts of the tuple indices."""
    out = np.zeros(r, dtype=np.int64)
    for row in tuple_digits(r, m):
        np.add.at(out, row, tuple_counts)
    return out
