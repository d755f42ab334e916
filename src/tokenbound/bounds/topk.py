"""Top-k error bounds (Lotfi et al. 2024, §4): the 0-1 loss ℓ_i = 1[x_i not among the k most probable tokens].

The loss already lies in [0, 1] (Δ = 1), so no smoothing and no α choice: Theorem A plus Hoeffding
subsampling with Δ = 1. Each k is its own statement at confidence 1 − δ (they are not simultaneous).
"""
from __future__ import annotations

import numpy as np

DEFAULT_TOP_K: tuple[int, ...] = (1, 10, 100)


def top_k_losses(rank: np.ndarray, ks) -> np.ndarray:
    """[K, N] array of 1.0 where the true token's rank exceeds k (rank 1 = most probable), else 0.0."""
    r = np.asarray(rank, dtype=np.int64)
    return (r[None, :] > np.asarray(list(ks), dtype=np.int64)[:, None]).astype(np.float64)
