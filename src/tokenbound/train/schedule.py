"""Learning-rate schedule: linear warmup, then cosine decay to a floor. A pure function of the step."""
from __future__ import annotations

import math


def learning_rate(step: int, *, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate for optimizer step `step` (0-based).

    Steps 0..warmup-1 rise linearly to `lr` (step 0 gets lr/warmup, never 0); then a half cosine falls
    from `lr` to ``min_lr_ratio * lr`` at step ``steps - 1`` and stays there beyond it.
    """
    min_lr = lr * min_lr_ratio
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
