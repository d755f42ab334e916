"""Top-k error bounds (Lotfi et al. 2024, §4; docs/theory.md §8): the 0-1 loss of a real k-token prediction.

The prediction set S_k(c) is the k tokens that come first when the vocabulary is ordered by p_θ(v | c)
descending, then by id ascending: a fixed tie-break that never looks at the true token. The loss is
ℓ_i = 1[x_i ∉ S_k(c_i)], i.e. 1[rank_i > k] with

    rank(x | c) = 1 + #{v : p(v) > p(x)} + #{v < x : p(v) = p(x)}        (``RANK_RULE``),

computed on the same float64 values for every v so that exactly tied scores stay exactly tied. Counting
ties with the true token as correct instead would certify no predictor at all (a model whose distribution
is uniform would get top-1 error 0).

The loss already lies in [0, 1] (Δ = 1), so no smoothing and no α choice: Theorem A plus Hoeffding
subsampling with Δ = 1. Each k is its own statement at confidence 1 − δ (they are not simultaneous).
"""
from __future__ import annotations

import numpy as np

DEFAULT_TOP_K: tuple[int, ...] = (1, 10, 100)
# Recorded as ``rank_rule`` in TokenStats meta: the order that defines rank and the prediction sets S_k.
RANK_RULE = "prob_desc_id_asc"


def tie_broken_rank(dist: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Rank (1 = first) of token true[j] in row j of the [N, V] scores `dist` under ``RANK_RULE``.

    Any monotone score works (probabilities or log-probabilities); rows must not contain NaN.
    """
    d = np.asarray(dist)
    t = np.asarray(true, dtype=np.int64)
    p_true = d[np.arange(t.size), t][:, None]
    lower_id = np.arange(d.shape[1], dtype=np.int64)[None, :] < t[:, None]
    return (1 + (d > p_true).sum(1) + ((d == p_true) & lower_id).sum(1)).astype(np.int64)


def rank_table(dist: np.ndarray) -> np.ndarray:
    """[N, V] int64: the rank of every token of every row under ``RANK_RULE`` (a permutation of 1..V per row)."""
    d = np.asarray(dist)
    order = np.argsort(-d, axis=1, kind="stable")  # stable: equal scores keep id order
    ranks = np.empty(d.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(1, d.shape[1] + 1, dtype=np.int64)[None, :].repeat(d.shape[0], 0), 1)
    return ranks


def top_k_losses(rank: np.ndarray, ks) -> np.ndarray:
    """[K, N] array of 1.0 where the true token's rank exceeds k (rank 1 = most probable), else 0.0."""
    r = np.asarray(rank, dtype=np.int64)
    return (r[None, :] > np.asarray(list(ks), dtype=np.int64)[:, None]).astype(np.float64)
