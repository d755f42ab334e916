"""Prefix-free code lengths and the bits paid for data-dependent choices (docs/theory.md §3).

Kraft: a prefix-free code with lengths L(h) defines a prior P(h) = 2^−L(h) with Σ P(h) <= 1.
"""
from __future__ import annotations

import math


def elias_gamma_bits(n: int) -> int:
    """Length of the Elias-gamma code of a positive integer n: 2⌊log2 n⌋ + 1 bits (Elias 1975).

    Prepending it to any binary string of length n makes the set of all such strings prefix-free,
    so a length that is not prefix-free becomes L + elias_gamma_bits(L).
    """
    if not isinstance(n, (int,)) and not float(n).is_integer():
        raise ValueError(f"elias_gamma_bits needs an integer, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"elias_gamma_bits needs n >= 1, got {n}")
    return 2 * (n.bit_length() - 1) + 1


def choice_bits(num_alternatives: int) -> float:
    """Bits for one choice made after seeing the data among K alternatives: log2 K (uniform prior over the grid)."""
    if num_alternatives < 1:
        raise ValueError(f"number of alternatives must be >= 1, got {num_alternatives}")
    return math.log2(num_alternatives)
