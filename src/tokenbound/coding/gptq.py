"""Per-group uniform quantizers: round-to-nearest and GPTQ (Frantar et al., ICLR 2023).

A weight matrix W [out, in] is split into groups of `group` consecutive input columns; each (row, group)
gets its own scale (and, asymmetric, its own offset), both rounded to the scale precision (fp16 by default)
*before* the integers are chosen, so the decoder reproduces the same grid. Symbols are non-negative
integers in [0, levels):
- asymmetric: levels = 2^bits, w ≈ offset + q·scale (offset = group minimum, scale = range / (levels − 1));
- symmetric:  levels = 2^bits − 1, w ≈ (q − qmax)·scale with qmax = 2^(bits−1) − 1, scale = max|w| / qmax.

GPTQ quantizes the columns in order and spreads each column's rounding error over the not-yet-quantized
columns through the inverse Hessian H = 2/n Σ x xᵀ of the layer inputs (Cholesky form, lazy batch updates of
`blocksize` columns). Group parameters are fitted on the error-updated columns when their group starts;
blocks are multiples of the group so every group lies inside one block.

Invariant: ``dequantize`` is the one function that turns (symbols, scales, offsets) into weights, in float32
elementwise arithmetic; encoder and decoder both use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..errors import TokenboundError

SCALE_DTYPES = {16: np.float16, 32: np.float32}


@dataclass(frozen=True)
class GroupSpec:
    """bits per symbol, group size (columns; clipped to the row length), symmetric or not, scale precision."""

    bits: int
    group: int
    sym: bool = False
    scale_bits: int = 16

    def __post_init__(self):
        if self.bits not in (2, 3, 4, 8):
            raise TokenboundError(f"bits must be 2, 3, 4, 8 (or 16 for fp16), got {self.bits}",
                                  param="method", value="ptq")
        if self.group < 1:
            raise TokenboundError(f"group must be >= 1 (or -1 for whole rows), got {self.group}",
                                  param="method", value="ptq")
        if self.scale_bits not in SCALE_DTYPES:
            raise TokenboundError(f"scale precision must be 16 or 32 bits, got {self.scale_bits}",
                                  param="method", value="ptq")

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1 if self.sym else 1 << self.bits

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def scale_dtype(self) -> np.dtype:
        return np.dtype(SCALE_DTYPES[self.scale_bits])

    def num_groups(self, n_in: int) -> int:
        return math.ceil(n_in / self.group)


def _round_to(x: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """Round float32 values to the scale precision (then back to float32, exactly representable)."""
    return torch.from_numpy(x.detach().cpu().numpy().astype(np.float32).astype(dtype).astype(np.float32))


def fit_group(w: torch.Tensor, spec: GroupSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale [out], offset [out]) for the columns `w` [out, g], already rounded to the scale precision.
    Symmetric groups have offset = −qmax·scale (implied, never stored)."""
    w = w.float()
    if spec.sym:
        scale = _round_to(w.abs().amax(dim=1) / spec.qmax, spec.scale_dtype)
        return scale, -spec.qmax * scale
    lo, hi = w.amin(dim=1), w.amax(dim=1)
    offset = _round_to(lo, spec.scale_dtype)
    scale = _round_to((hi - offset).clamp_min(0) / (spec.levels - 1), spec.scale_dtype)
    return scale, offset


def quantize_with(w: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, spec: GroupSpec) -> torch.Tensor:
    """Nearest grid symbols in [0, levels) for columns `w` [out] or [out, g] given per-row scale/offset."""
    if w.ndim == 2:
        scale, offset = scale[:, None], offset[:, None]
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round((w - offset) / safe), 0, spec.levels - 1).to(torch.int64)


def dequantize(symbols: np.ndarray, scales: np.ndarray, offsets: np.ndarray | None, spec: GroupSpec) -> np.ndarray:
    """Weights [out, in] (float32) from symbols [out, in], scales/offsets [out, groups] in the scale precision."""
    out, n_in = symbols.shape
    idx = np.arange(n_in) // spec.group
    s = scales.astype(np.float32)[:, idx]
    q = symbols.astype(np.float32)
    if spec.sym:
        return (q - np.float32(spec.qmax)) * s
    return q * s + offsets.astype(np.float32)[:, idx]


def _group_bounds(n_in: int, group: int):
    for g, start in enumerate(range(0, n_in, group)):
        yield g, start, min(start + group, n_in)


def rtn_quantize(w: torch.Tensor, spec: GroupSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-to-nearest: (symbols int64 [out, in], scales [out, G], offsets [out, G]) in the scale dtype."""
    out, n_in = w.shape
    G = spec.num_groups(n_in)
    symbols = torch.empty(out, n_in, dtype=torch.int64)
    scales = torch.empty(out, G)
    offsets = torch.empty(out, G)
    for g, a, b in _group_bounds(n_in, spec.group):
        scales[:, g], offsets[:, g] = fit_group(w[:, a:b], spec)
        symbols[:, a:b] = quantize_with(w[:, a:b].float(), scales[:, g], offsets[:, g], spec)
    return symbols.numpy(), scales.numpy().astype(spec.scale_dtype), offsets.numpy().astype(spec.scale_dtype)


def _upper_cholesky_of_inverse(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹ with λ = damp·mean(diag H); more damping if H is not positive definite."""
    h = h.double().clone()
    dead = torch.diag(h) <= 0
    h[dead, dead] = 1.0  # inputs never seen in calibration: no information, keep the column independent
    mean_diag = torch.diag(h).mean().item()
    for attempt in range(6):
        lam = damp * (10 ** attempt) * mean_diag
        try:
            L = torch.linalg.cholesky(h + lam * torch.eye(h.shape[0], dtype=h.dtype))
            return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
        except torch.linalg.LinAlgError:
            continue
    raise TokenboundError("calibration Hessian is not positive definite even with damping", param="method", value="ptq")


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, spec: GroupSpec, damp: float = 0.01,
                  blocksize: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ with per-group scales: same outputs as ``rtn_quantize``, chosen to reduce tr(ΔW H ΔWᵀ)."""
    W = w.detach().float().clone()
    out, n_in = W.shape
    U = _upper_cholesky_of_inverse(hessian, damp).float()
    group = min(spec.group, n_in)
    block = group * max(1, blocksize // group)
    G = spec.num_groups(n_in)
    symbols = torch.empty(out, n_in, dtype=torch.int64)
    scales = torch.empty(out, G)
    offsets = torch.empty(out, G)
    scale = offset = None
    for i1 in range(0, n_in, block):
        i2 = min(i1 + block, n_in)
        W1 = W[:, i1:i2].clone()
        err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % spec.group == 0:  # fit the group on its columns as updated so far
                g, end = col // spec.group, min(col + spec.group, n_in)
                scale, offset = fit_group(W1[:, i:i + (end - col)], spec)
                scales[:, g], offsets[:, g] = scale, offset
            q = quantize_with(W1[:, i], scale, offset, spec)
            symbols[:, col] = q
            deq = q.float() * scale + offset
            e = (W1[:, i] - deq) / U1[i, i]
            W1[:, i:] -= e[:, None] * U1[i, i:][None, :]
            err1[:, i] = e
        W[:, i2:] -= err1 @ U[i1:i2, i2:]
    return symbols.numpy(), scales.numpy().astype(spec.scale_dtype), offsets.numpy().astype(spec.scale_dtype)


def hessian_error(w: np.ndarray, w_hat: np.ndarray, hessian: np.ndarray) -> float:
    """The layer-output proxy loss GPTQ minimises: tr((W − Ŵ) H (W − Ŵ)ᵀ)."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    return float(np.einsum("ij,jk,ik->", d, np.asarray(hessian, np.float64), d))


def collect_hessians(forward: Callable[[torch.Tensor], Any], targets: dict[str, torch.nn.Module],
                     windows: np.ndarray) -> dict[str, np.ndarray]:
    """H = 2/n Σ x xᵀ over every input row x that each target layer sees while `forward` runs on each window.

    Gathered with forward hooks in one pass of the unquantized model (not GPTQ's sequential variant, which
    re-feeds already-quantized layers); running means in float32 as in the reference implementation."""
    from ..progress import track

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):
        def hook(_mod, inp, _out):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float().cpu()
            n_old, k = counts.get(name, 0), x.shape[0]
            acc = sums.get(name)
            if acc is None:
                acc = sums[name] = torch.zeros(x.shape[1], x.shape[1])
            acc.mul_(n_old / (n_old + k)).addmm_(x.t(), x, alpha=2.0 / (n_old + k))
            counts[name] = n_old + k
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in targets.items()]
    try:
        for row in track(windows, "calibration", "windows"):
            forward(torch.from_numpy(np.asarray(row, dtype=np.int64))[None])
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n].double().numpy() for n in sums}
