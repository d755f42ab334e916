"""Training batches: the stream windows of ``evaluate.windows``, one batch per step (deterministic per
(seed, step), so a resumed run draws exactly the batches the uninterrupted run would have drawn)."""
from __future__ import annotations

from typing import Iterator

import torch

from ..data.store import TokenStore
from ..evaluate.windows import Batch, batch_at, check_context


def random_batches(store: TokenStore, block_size: int, batch_size: int, seed: int, context: str = "doc",
                   device: str | torch.device = "cpu", start_step: int = 0) -> Iterator[Batch]:
    """Infinite iterator of (x, y, segments_or_None) batches; the k-th item (counting from 0) is the batch of
    step ``start_step + k``, so resuming at step k is ``random_batches(..., start_step=k)``."""
    check_context(context)
    step = int(start_step)
    while True:
        yield batch_at(store, block_size, batch_size, seed, step, context, device)
        step += 1
