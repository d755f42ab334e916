"""Training batches: random windows of a TokenStore's stream, deterministic per (seed, step).

A window is drawn from the stream with the virtual eot prepended (DESIGN §3: a virtual eot precedes the
stream), so the very first token of the corpus is a prediction target like any other. For a window start
s in the extended stream e = [eot] + tokens, ``x = e[s:s+T]`` and ``y = e[s+1:s+T+1]``.

Invariants:
- The batch of step k depends only on (seed, k, store, block_size, batch_size): no iterator state, so a
  resumed run draws exactly the batches the uninterrupted run would have drawn.
- ``global_batch_starts`` draws all rows of one optimizer step at once; ranks and accumulation micro-steps
  take disjoint contiguous slices of it, so N ranks x A micro-batches see the same rows as 1 rank x N*A
  micro-batches (the DDP equivalence the tests check).
- Under the ``doc`` context rule the segments are ``segments_from_ids(x, eot)`` (a new segment at every eot
  input token); under ``stream`` they are None (plain causal attention).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..data.store import TokenStore
from ..errors import TokenboundError
from ..models.base import segments_from_ids

CONTEXT_RULES = ("doc", "stream")

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def check_context(context: str, flag: str = "--context") -> str:
    if context not in CONTEXT_RULES:
        raise TokenboundError(f"{flag}: must be one of {', '.join(CONTEXT_RULES)}, got {context!r}")
    return context


def num_window_starts(num_tokens: int, block_size: int) -> int:
    """How many windows of T+1 tokens fit in the extended stream (virtual eot + num_tokens tokens)."""
    return num_tokens + 1 - (block_size + 1) + 1


def global_batch_starts(num_tokens: int, block_size: int, rows: int, seed: int, step: int) -> np.ndarray:
    """Start offsets (in the extended stream) of the `rows` windows of optimizer step `step`.

    Drawn uniformly with replacement from a generator seeded by (seed, step) only.
    """
    n = num_window_starts(num_tokens, block_size)
    if n < 1:
        raise TokenboundError(f"data: the store holds {num_tokens} tokens, fewer than block size + 1 = "
                              f"{block_size + 1}; use a larger corpus or a smaller block size")
    rng = np.random.default_rng([int(seed), int(step), 0x7B])  # 0x7B: stream tag for "batches"
    return rng.integers(0, n, size=rows, dtype=np.int64)


def windows_at(store: TokenStore, starts: np.ndarray, block_size: int, context: str = "doc",
               device: str | torch.device = "cpu") -> Batch:
    """(x, y, segments) LongTensors [len(starts), block_size] for the given extended-stream starts."""
    check_context(context)
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(block_size + 1, dtype=np.int64)[None, :] - 1
    rows = np.asarray(store.tokens[np.maximum(idx, 0)], dtype=np.int64)
    rows[idx < 0] = store.eot  # the virtual eot before the stream
    data = torch.from_numpy(rows)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    seg = segments_from_ids(x, store.eot) if context == "doc" else None
    dev = torch.device(device)
    if dev.type != "cpu":
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        seg = None if seg is None else seg.to(dev, non_blocking=True)
    return x, y, seg


def batch_at(store: TokenStore, block_size: int, batch_size: int, seed: int, step: int, context: str = "doc",
             device: str | torch.device = "cpu", part: int = 0, num_parts: int = 1) -> Batch:
    """Part `part` of `num_parts` equal slices of step `step`'s global batch of ``batch_size * num_parts`` rows."""
    if not 0 <= part < num_parts:
        raise ValueError(f"part {part} not in [0, {num_parts})")
    starts = global_batch_starts(store.num_tokens, block_size, batch_size * num_parts, seed, step)
    return windows_at(store, starts[part * batch_size:(part + 1) * batch_size], block_size, context, device)


def random_batches(store: TokenStore, block_size: int, batch_size: int, seed: int, context: str = "doc",
                   device: str | torch.device = "cpu", start_step: int = 0) -> Iterator[Batch]:
    """Infinite iterator of (x, y, segments_or_None) batches; the k-th item (counting from 0) is the batch of
    step ``start_step + k``, so resuming at step k is ``random_batches(..., start_step=k)``."""
    check_context(context)
    step = int(start_step)
    while True:
        yield batch_at(store, block_size, batch_size, seed, step, context, device)
        step += 1


def model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               segments: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats (a scalar tensor) of ``model(x, segments) -> logits [B, T, V]``."""
    logits = model(x, segments=segments)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
