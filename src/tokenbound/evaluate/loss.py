"""The held-out loss: mean bits per token of a model over windows of a TokenStore (the one evaluator).

Training's validation, the compress stage's before/after comparison, the level grid and QAT's train-loss
checks and PTQ's held-out numbers all call ``mean_bits_per_token``; they differ only in the windows they pass
(``evaluate.windows``: stream windows of given steps, or sampled rows) and in how a batch is scored:

- ``scorer="logits"``: a torch module ``module(x, segments=...) -> logits``; a batch's loss is the float32
  cross-entropy mean (``model_loss``, training's loss) times its token count, summed in nats, optionally
  under bfloat16 autocast on CUDA (training's validation) and summed across ranks by ``all_reduce``.
- ``scorer="log_probs"``: a LanguageModel; a batch's loss is the float64 sum of −log p of its scored
  targets (targets equal to ``windows.IGNORE`` are not scored), summed in bits.

Deterministic given the windows (hence given their seed): a quick comparison of models, not a bound.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from ..errors import TokenboundError
from .windows import CONTEXT_RULES, Batch, stream_batches

SCORERS = ("logits", "log_probs")
EVAL_BATCH_SIZE = 8
MAX_EVAL_BLOCK = 256


@dataclass(frozen=True)
class HeldoutLoss:
    """Mean loss in bits per token over ``tokens`` scored targets."""

    bits_per_token: float
    tokens: int


def model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               segments: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats (a scalar tensor) of ``model(x, segments) -> logits [B, T, V]``."""
    logits = model(x, segments=segments)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def autocast(device: str):
    """bfloat16 autocast on a CUDA device that supports it, else nothing (training's forward passes)."""
    if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mean_bits_per_token(model: Any, batches: Iterable[Batch], *, scorer: str = "log_probs",
                        device: str | None = None,
                        all_reduce: Callable[[list[float]], list[float]] | None = None,
                        progress: str | None = None, total: int | None = None) -> HeldoutLoss:
    """Mean loss in bits per token of `model` on `batches` of (x, y, segments) (see the module docstring).

    ``device``: with ``scorer="logits"``, forward passes run under ``autocast(device)``. ``all_reduce`` sums
    [loss, tokens] across ranks. ``progress``: a progress label (``total`` batches), or None for no progress.
    """
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    if progress is not None:
        from ..progress import track

        batches = track(batches, progress, "windows", total=total)
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    loss, count = 0.0, 0
    try:
        with torch.no_grad():
            for x, y, seg in batches:
                if scorer == "logits":
                    with autocast(device) if device is not None else contextlib.nullcontext():
                        batch_nats = model_loss(model, x, y, seg)
                    loss += float(batch_nats) * y.numel()
                    count += y.numel()
                else:
                    lp = model.log_probs(x, seg)
                    scored = y >= 0
                    nll = -lp.gather(-1, y.clamp(min=0).to(lp.device).unsqueeze(-1)).squeeze(-1).double()
                    if not bool(scored.all()):
                        nll = nll[scored.to(nll.device)]
                    loss += float(nll.sum()) / math.log(2)
                    count += int(scored.sum())
    finally:
        if module is not None:
            module.train(was_training)
    if all_reduce is not None:
        loss, count = all_reduce([loss, count])
    if not count:
        raise ValueError("no scored tokens in the held-out windows")
    bits = loss / count / math.log(2) if scorer == "logits" else loss / count
    return HeldoutLoss(float(bits), int(count))


def bits_per_token(model, store, num_tokens: int, seed: int = 0) -> dict[str, Any]:
    """Mean loss in bits per token of a LanguageModel on fixed windows of `store` (``mean_bits_per_token``).

    Windows of ``min(max_context, 256)`` tokens (fewer if the store is small) at seeded random offsets; every
    position of a window is a target, under the model's own context rule (a GPT's ``config.context``; the
    document-aware ``doc`` rule otherwise). A quick before/after comparison, not a bound.
    """
    block = min(int(model.max_context or MAX_EVAL_BLOCK), MAX_EVAL_BLOCK, max(store.num_tokens - 1, 1))
    if store.num_tokens < 2:
        raise TokenboundError(f"holds {store.num_tokens} tokens, too few to evaluate", param="eval_data",
                              value=store.path)
    context = getattr(getattr(model, "config", None), "context", "doc")
    context = context if context in CONTEXT_RULES else "doc"
    rows = max(1, math.ceil(num_tokens / block))
    loss = mean_bits_per_token(model, stream_batches(store, block, rows, EVAL_BATCH_SIZE, seed, context))
    return {"bits_per_token": loss.bits_per_token, "tokens": loss.tokens, "block": block, "seed": seed,
            "context": context}
