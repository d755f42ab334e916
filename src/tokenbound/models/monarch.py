"""Monarch linear layer (Dao et al. 2022, "Monarch: Expressive Structured Matrices for Efficient and Accurate
Training"): W = L · P · R with R, L block-diagonal (b blocks each) and P the Monarch (reshape-transpose)
permutation between them.

Shapes, for in = b·p, out = b·s and an intermediate width m = b·q with q = min(p, s) (as in the authors' code):
- R: b blocks w1[k] of shape [q, p]: h[k·q + j] = Σ_i w1[k, j, i] · x[k·p + i];
- P: view h as [b (k), b (l), q/b (t)] and swap the first two axes: block l of the second factor sees
  t-chunk l of every first-stage block k, so every input reaches every output (needs b | q);
- L: b blocks w2[l] of shape [s, q]: y[l·s + u] = Σ_r w2[l, u, r] · h'[l·q + r], r = k·(q/b) + t.
Coded scalars: b·q·p + b·s·q = q·(in + out) (+ out for the bias); for square n: 2·n²/b. Nothing is seeded-frozen.
Each (input, output) pair is joined by q/b paths through the two factors.
"""
from __future__ import annotations

import torch

from ..errors import TokenboundError
from .layers_base import DENSE_INIT_STD, StructuredLinear, seeded_normal


def _swap_block_axes(h: torch.Tensor, nblocks: int) -> torch.Tensor:
    """[k, N, l·t + tt] -> [l, N, k·t + tt] for k, l < nblocks: the Monarch permutation (an involution, so the
    same function maps gradients back).

    One strided copy per output block: a single ``permute(2, 1, 0, 3).reshape`` does the same, but torch's
    generic copy kernel took 11-60 ms instead of 0.6 ms for [4, 2048, 256] on the 2-core dev machine, a third
    of Monarch's whole step.
    """
    b, n, q = h.shape
    t = q // nblocks
    out = torch.empty_like(h)
    for l in range(nblocks):
        out[l].view(n, b, t).copy_(h[:, :, l * t:(l + 1) * t].transpose(0, 1))
    return out


class _MonarchMultiply(torch.autograd.Function):
    """x2d [N, b·p] -> [N, b·s] through R (w1), the Monarch permutation and L (w2), with a hand-written backward.

    Why not plain autograd: the op is only 2x cheaper than dense in flops for b = 4, so every extra copy shows;
    this keeps the work to 6 batched matmuls, 2 permutation copies and 2 transposition copies per step.
    """

    @staticmethod
    def forward(ctx, x2d: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        b, _, p = w1.shape
        n = x2d.shape[0]
        xb = x2d.reshape(n, b, p).transpose(0, 1)                       # [k, N, p], a strided view (no copy)
        hp = _swap_block_axes(torch.bmm(xb, w1.transpose(1, 2)), b)  # [l, N, q]
        y = torch.bmm(hp, w2.transpose(1, 2))                        # [l, N, s]
        ctx.save_for_backward(x2d, w1, w2, hp)
        ctx.input_dtypes = (x2d.dtype, w1.dtype, w2.dtype)
        return y.transpose(0, 1).reshape(n, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x2d, w1, w2, hp = ctx.saved_tensors
        b, _, p = w1.shape
        n = x2d.shape[0]
        gy = grad_out.reshape(n, b, -1).transpose(0, 1)               # [l, N, s]
        # Under autocast the forward ran in a lower precision (hp, grad_out); compute the backward in the
        # gradient's dtype and hand each gradient back in its input's dtype.
        x2d, w1, w2, hp = (t.to(gy.dtype) for t in (x2d, w1, w2, hp))
        need_x, need_w1, need_w2 = ctx.needs_input_grad
        gw2 = torch.bmm(gy.transpose(1, 2), hp) if need_w2 else None
        gx = gw1 = None
        if need_x or need_w1:
            gh = _swap_block_axes(torch.bmm(gy, w2), b)              # [k, N, q]
            if need_w1:
                gw1 = torch.bmm(gh.transpose(1, 2), x2d.reshape(n, b, p).transpose(0, 1))
            if need_x:
                gx = torch.bmm(gh, w1).transpose(0, 1).reshape(n, b * p)
        dtypes = ctx.input_dtypes
        return tuple(None if g is None else g.to(dt) for g, dt in zip((gx, gw1, gw2), dtypes))


def monarch_shapes(in_features: int, out_features: int, nblocks: int) -> tuple[int, int, int]:
    """(p, q, s): input block size, intermediate block size, output block size; TokenboundError if impossible."""
    b = nblocks
    if b < 1 or in_features % b or out_features % b:
        raise TokenboundError(f"monarch:{b} needs in ({in_features}) and out ({out_features}) "
                              f"divisible by the number of blocks {b}", param="layers")
    p, s = in_features // b, out_features // b
    q = min(p, s)
    if q % b:
        raise TokenboundError(f"monarch:{b} needs the block size min(in, out)/b = {q} divisible by "
                              f"{b} (the Monarch permutation), got a {out_features}x{in_features} weight",
                              param="layers")
    return p, q, s


class MonarchLinear(StructuredLinear):
    """y = x Wᵀ + bias with W = L·P·R (module docstring), by two batched matmuls and two transposes.

    Init: w1, w2 entries N(0, σ²) with (q/b)·σ⁴ = 0.02², so the entries of W have std 0.02 (the dense GPT init).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, seed: int, nblocks: int = 4):
        super().__init__(in_features, out_features, bias)
        p, q, s = monarch_shapes(in_features, out_features, nblocks)
        self.nblocks = nblocks
        factor_std = (DENSE_INIT_STD ** 2 * nblocks / q) ** 0.25
        self.w1 = torch.nn.Parameter(seeded_normal((nblocks, q, p), factor_std, seed, "monarch.w1"))
        self.w2 = torch.nn.Parameter(seeded_normal((nblocks, s, q), factor_std, seed, "monarch.w2"))

    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        y = _MonarchMultiply.apply(x.reshape(-1, self.in_features), self.w1, self.w2)
        return y.view(*x.shape[:-1], self.out_features)

    def dense_weight(self) -> torch.Tensor:
        """L @ P @ R built from explicit block-diagonal matrices and a permutation matrix (not the forward path)."""
        b = self.nblocks
        _, q, _ = self.w1.shape
        R = torch.block_diag(*self.w1.unbind(0))                     # [b·q, in]
        L = torch.block_diag(*self.w2.unbind(0))                     # [out, b·q]
        t = q // b
        k, l, tt = torch.meshgrid(torch.arange(b), torch.arange(b), torch.arange(t), indexing="ij")
        src = (k * q + l * t + tt).reshape(-1)                       # index in h (block k, chunk l)
        dst = (l * q + k * t + tt).reshape(-1)                       # index in h' (block l, r = k·t + tt)
        P = torch.zeros(b * q, b * q, dtype=self.w1.dtype, device=self.w1.device)
        P[dst, src] = 1.0
        return L @ P @ R

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nblocks={self.nblocks}, w1={tuple(self.w1.shape)}, w2={tuple(self.w2.shape)}"
