"""Randomized Hadamard rotations for incoherence processing before quantization (QuIP / QuIP#).

For a dimension n = b·m with b the largest power of two dividing n, the rotation is
    Q = blockdiag(H_b / sqrt(b), …, H_b / sqrt(b)) · diag(s),   s ∈ {±1}^n drawn from a seed,
where H_b is the Sylvester Hadamard matrix (block-wise rather than padded, so a rotated matrix has the same
shape and the same number of coded parameters). Q is orthogonal, so a weight matrix W [out, in] is coded as
W' = Q_out W Q_inᵀ and recovered exactly (up to float rounding) as W = Q_outᵀ W' Q_in; its Hessian over the
input dimension becomes H' = Q_in H Q_inᵀ. Only the seed is stored, so the rotation costs no payload.

Invariant: every operation is an elementwise float64 butterfly (add, subtract, multiply) in a fixed order,
so encoder and decoder reproduce the same floats on any IEEE machine.
"""
from __future__ import annotations

import zlib

import numpy as np


def pow2_block(n: int) -> int:
    """Largest power of two dividing n (1 for odd n: then the rotation is just the random signs)."""
    if n < 1:
        raise ValueError(f"dimension must be >= 1, got {n}")
    return n & -n


def fwht_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """Unnormalised fast Walsh–Hadamard transform of consecutive length-`block` chunks of the last axis."""
    x = np.array(x, dtype=np.float64, copy=True)
    n = x.shape[-1]
    if block < 1 or block & (block - 1) or n % block:
        raise ValueError(f"block {block} must be a power of two dividing {n}")
    lead = x.shape[:-1]
    h = 1
    while h < block:
        y = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        x = np.stack((a + b, a - b), axis=-2).reshape(*lead, n)
        h *= 2
    return x


def random_signs(n: int, seed: int, tag: str) -> np.ndarray:
    """±1 signs for a dimension of size n, derived from (seed, tag) so each tensor/axis gets its own."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(tag.encode()), n])
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def rotate(x: np.ndarray, axis: int, signs: np.ndarray) -> np.ndarray:
    """Apply Q (signs, then block Hadamard / sqrt(b)) to every vector of `x` along `axis` (float64)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    b = pow2_block(n)
    y = fwht_blocks(x * signs, b) * (1.0 / np.sqrt(b))
    return np.moveaxis(y, -1, axis)


def unrotate(y: np.ndarray, axis: int, signs: np.ndarray) -> np.ndarray:
    """Apply Qᵀ = diag(s) · blockdiag(H_b) / sqrt(b) along `axis` (the inverse of ``rotate``)."""
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, -1)
    n = y.shape[-1]
    b = pow2_block(n)
    x = (fwht_blocks(y, b) * (1.0 / np.sqrt(b))) * signs
    return np.moveaxis(x, -1, axis)


def rotation_signs(shape: tuple[int, int], seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(signs for the output dimension, signs for the input dimension) of the weight `name`."""
    return random_signs(shape[0], seed, f"{name}/out"), random_signs(shape[1], seed, f"{name}/in")


def rotate_weight(w: np.ndarray, s_out: np.ndarray, s_in: np.ndarray) -> np.ndarray:
    """W' = Q_out W Q_inᵀ for W [out, in]."""
    return rotate(rotate(w, 1, s_in), 0, s_out)


def unrotate_weight(w_rot: np.ndarray, s_out: np.ndarray, s_in: np.ndarray) -> np.ndarray:
    """W = Q_outᵀ W' Q_in (exact inverse of rotate_weight up to float64 rounding)."""
    return unrotate(unrotate(w_rot, 0, s_out), 1, s_in)


def rotate_hessian(h: np.ndarray, s_in: np.ndarray) -> np.ndarray:
    """H' = Q_in H Q_inᵀ for the input-dimension Hessian H [in, in]."""
    return rotate(rotate(h, 1, s_in), 0, s_in)
