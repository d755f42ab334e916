"""Windows of a TokenStore as model input rows, deterministic in a seed (for training batches and held-out loss).

A stream window is drawn from the stream with the virtual eot prepended (docs/data.md: a virtual eot precedes
the stream), so the very first token of the corpus is a prediction target like any other. For a window start
s in the extended stream e = [eot] + tokens, ``x = e[s:s+T]`` and ``y = e[s+1:s+T+1]``.

Invariants:
- The batch of step k depends only on (seed, k, store, block_size, batch_size): no iterator state, so a
  resumed run draws exactly the batches the uninterrupted run would have drawn.
- ``global_batch_starts`` draws all rows of one optimizer step at once; ranks and accumulation micro-steps
  take disjoint contiguous slices of it, so N ranks x A micro-batches see the same rows as 1 rank x N*A
  micro-batches (the DDP equivalence the tests check).
- Under the ``doc`` context rule the segments are ``segments_from_ids(x, eot)`` (a new segment at every eot
  input token); under ``stream`` they are None (plain causal attention).

``stream_batches`` yields the windows of several steps (the held-out loss's windows); ``sampled_rows`` draws
plain windows of the stored tokens (no virtual eot) at uniformly random starts, the PTQ calibration and
held-out windows.
"""
from __future__ import annotations

import math
import zlib
from typing import Iterator

import numpy as np
import torch

from ..data.store import TokenStore
from ..errors import TokenboundError
from ..models.base import segments_from_ids

CONTEXT_RULES = ("doc", "stream")
IGNORE = -100  # a target that is not scored (torch's cross-entropy ignore index)

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def check_context(context: str, param: str = "context") -> str:
    if context not in CONTEXT_RULES:
        raise TokenboundError(f"must be one of {', '.join(CONTEXT_RULES)}, got {context!r}", param=param)
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
        raise TokenboundError(f"the store holds {num_tokens} tokens, fewer than block size + 1 = "
                              f"{block_size + 1}; use a larger corpus or a smaller block size", param="data")
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


def stream_batches(store: TokenStore, block_size: int, rows: int, batch_size: int, seed: int,
                   context: str = "doc", *, step_base: int = 0, rank: int = 0, world_size: int = 1,
                   device: str | torch.device = "cpu") -> Iterator[Batch]:
    """`rows` stream windows in batches of `batch_size` (the last one may be smaller): batch i holds the rows
    of step ``step_base + i`` (``global_batch_starts``), of which this rank takes its ``np.array_split`` share,
    so the windows are the same whatever the world size. A rank with no rows of a batch skips it."""
    for i in range(math.ceil(rows / batch_size)):
        starts = global_batch_starts(store.num_tokens, block_size, min(batch_size, rows - i * batch_size), seed,
                                     step_base + i)
        mine = np.array_split(starts, world_size)[rank] if world_size > 1 else starts
        if mine.size:
            yield windows_at(store, mine, block_size, context, device)


def sampled_rows(store: TokenStore, n: int, ctx: int, seed: int, tag: str, max_context: int | None) -> np.ndarray:
    """[n, L] token windows of the stored tokens at uniformly random sorted starts (rng from (seed, tag));
    L = min(ctx, max_context, the stream's length)."""
    length = min(ctx, max_context or ctx, store.num_tokens)
    if length < 2:
        raise TokenboundError(f"{store.path}: too few tokens ({store.num_tokens}) for windows")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(tag.encode())])
    starts = np.sort(rng.integers(0, store.num_tokens - length + 1, size=n))
    return np.stack([np.asarray(store.tokens[s:s + length], dtype=np.int64) for s in starts])


def row_batches(rows: np.ndarray, eot: int, doc_segments: bool) -> Iterator[Batch]:
    """One batch per row of `rows` (from ``sampled_rows``): the whole row is the input, every token after the
    first is a target (the last position predicts nothing), segments by the ``doc`` rule if `doc_segments`."""
    for row in rows:
        x = torch.from_numpy(row)[None]
        y = torch.full_like(x, IGNORE)
        y[0, :-1] = x[0, 1:]
        yield x, y, segments_from_ids(x, eot) if doc_segments else None
