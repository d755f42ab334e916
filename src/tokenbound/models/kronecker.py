"""Kronecker-factored linear layer: W = A ⊗ B, applied through a reshape, never materialised.

Shapes: A [o1, i1], B [o2, i2] with o1·o2 = out and i1·i2 = in; W[a·o2 + b, c·i2 + d] = A[a, c]·B[b, d]
(``torch.kron`` order). Coded: A, B (and the bias): o1·i1 + o2·i2 (+ out) scalars. Nothing is seeded-frozen.
"""
from __future__ import annotations

import math

import torch

from ..errors import TokenboundError
from .layers_base import DENSE_INIT_STD, StructuredLinear, seeded_normal


def near_sqrt_split(n: int) -> tuple[int, int]:
    """(f1, f2) with f1·f2 = n, f1 <= f2 and f1 the largest divisor of n not above √n."""
    f1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return f1, n // f1


def kron_factor_shapes(in_features: int, out_features: int,
                       a_shape: tuple[int, int] | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Shapes ((o1, i1), (o2, i2)) of A and B: `a_shape` = (o1, i1) if given, else each side split near √."""
    if a_shape is None:
        o1, _ = near_sqrt_split(out_features)
        i1, _ = near_sqrt_split(in_features)
    else:
        o1, i1 = a_shape
        if o1 < 1 or i1 < 1 or out_features % o1 or in_features % i1:
            raise TokenboundError(f"kron:{o1}x{i1} does not divide a {out_features}x{in_features} "
                                  "weight (A's shape O1xI1 must divide [out, in])", param="layers")
    return (o1, i1), (out_features // o1, in_features // i1)


class KroneckerLinear(StructuredLinear):
    """y = x (A ⊗ B)ᵀ + bias, computed as Y = A · X · Bᵀ on x reshaped to [.., i1, i2].

    Init: A and B entries N(0, 0.02) each, so the entries of A ⊗ B have std 0.02 (the dense GPT init).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, seed: int,
                 a_shape: tuple[int, int] | None = None):
        super().__init__(in_features, out_features, bias)
        (o1, i1), (o2, i2) = kron_factor_shapes(in_features, out_features, a_shape)
        factor_std = math.sqrt(DENSE_INIT_STD)
        self.A = torch.nn.Parameter(seeded_normal((o1, i1), factor_std, seed, "kron.A"))
        self.B = torch.nn.Parameter(seeded_normal((o2, i2), factor_std, seed, "kron.B"))
        # Multiply the side that shrinks the intermediate most first (fewer flops and a smaller activation).
        self._b_first = i1 * i2 * o2 + o1 * i1 * o2 <= o1 * i1 * i2 + o1 * i2 * o2

    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        (o1, i1), (o2, i2) = self.A.shape, self.B.shape
        lead = x.shape[:-1]
        X = x.reshape(-1, i1, i2)
        if self._b_first:
            Y = torch.matmul(self.A, torch.matmul(X, self.B.t()))
        else:
            Y = torch.matmul(torch.matmul(self.A, X), self.B.t())
        return Y.reshape(*lead, o1 * o2)

    def dense_weight(self) -> torch.Tensor:
        return torch.kron(self.A, self.B)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, A={tuple(self.A.shape)}, B={tuple(self.B.shape)}"
