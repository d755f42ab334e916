"""Quantization-aware training (the seed paper's QAT; docs/compression.md): fine-tune the coded weights and the
codebooks jointly through a straight-through estimator, then freeze and quantize exactly.

Each step the coded parameters are overwritten with their quantized values ``codebook[nearest(w)]`` of latent
float weights ``w``; the loss of that quantized model is back-propagated; the gradient with respect to each
quantized entry is passed straight through to its latent weight (STE) and summed per level into the
codebook's gradient (the exact gradient of the loss with respect to the level values). The zero level stays
pinned at exactly 0. Optimizer: Adam (the seed paper's code used SGD with momentum; Adam needs no per-model
learning-rate tuning at these small step counts, and ``optimizer=sgd`` is available).

After the last step the codebooks are rounded to fp16 and the final symbols are the nearest fp16 levels of the
final latent weights (``quantize.quantize_state`` with the fine-tuned codebooks): exactly what is coded.
Batches come from the training store through ``train.batches.random_batches`` with a seed derived from the
run's seed (recorded), so QAT is deterministic; ``mean_loss_bits`` is the shared held-out evaluator
(``evaluate.loss``) on fixed windows of that store.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..coding.quantize import QuantConfig, Quantized, quantize_state
from ..errors import TokenboundError
from ..evaluate.loss import mean_bits_per_token, model_loss
from ..evaluate.windows import stream_batches
from ..models.gpt import coded_state_dict
from ..progress import Progress
from ..train.batches import random_batches

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class QATConfig:
    """Fine-tuning schedule. ``lr`` for the latent weights, ``codebook_lr`` for the levels (default: lr)."""

    steps: int = 300
    lr: float = 1e-4
    codebook_lr: float | None = None
    batch_size: int = 16
    optimizer: str = "adam"
    momentum: float = 0.9
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0:
            raise TokenboundError(f"steps must be >= 0, got {self.steps}", param="method")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TokenboundError(f"lr must be a positive number, got {self.lr}", param="method")
        if self.codebook_lr is not None and not (self.codebook_lr >= 0 and math.isfinite(self.codebook_lr)):
            raise TokenboundError(f"codebook_lr must be >= 0, got {self.codebook_lr}", param="method")
        if self.batch_size < 1:
            raise TokenboundError(f"batch must be >= 1, got {self.batch_size}", param="method")
        if self.optimizer not in OPTIMIZERS:
            raise TokenboundError(f"optimizer must be one of {'|'.join(OPTIMIZERS)}, got {self.optimizer!r}",
                                  param="method")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "codebook_lr": self.codebook_lr, "batch_size": self.batch_size,
                "optimizer": self.optimizer, "momentum": self.momentum, "seed": self.seed}


def nearest_index(w: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index into (unsorted) `codebook` of the nearest level of each entry of `w` (ties to the lower level)."""
    levels, order = torch.sort(codebook)
    mids = (levels[1:] + levels[:-1]) / 2
    return order[torch.bucketize(w, mids, right=False)]


def mean_loss_bits(module: torch.nn.Module, store, block_size: int, context: str, *, num_batches: int,
                   batch_size: int, seed: int) -> float:
    """Mean next-token loss in bits per token of `module` on `num_batches` fixed random windows of `store`
    (deterministic in `seed`; the same windows for every model compared with the same arguments)."""
    device = next(module.parameters()).device
    batches = stream_batches(store, block_size, num_batches * batch_size, batch_size, seed, context, device=device)
    return mean_bits_per_token(module, batches, scorer="logits").bits_per_token


def quantization_aware_training(module: torch.nn.Module, store, block_size: int, context: str,
                                quant: QuantConfig, qat: QATConfig, progress: bool = True
                                ) -> tuple[Quantized, dict[str, Any]]:
    """Fine-tune `module`'s coded parameters (in place) and their codebooks through the STE; return the exact
    quantization of the result (fp16 codebooks, nearest-level symbols) and a log.

    On return the module's coded parameters hold the dequantized values (what the decoder will rebuild).
    """
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise TokenboundError("the model has no coded (trainable) parameters to quantize", param="run")
    init = quantize_state(coded_state_dict(module), quant)
    device = next(iter(params.values())).device
    latent = {n: p.detach().clone().float().requires_grad_(True) for n, p in params.items()}
    codebooks = {g: torch.tensor(cb.astype(np.float32), device=device, requires_grad=True)
                 for g, cb in init.codebooks.items()}
    zero_level = {g: int(torch.argmin(cb.detach().abs())) for g, cb in codebooks.items()}
    cb_lr = qat.lr if qat.codebook_lr is None else qat.codebook_lr
    groups = [{"params": list(latent.values()), "lr": qat.lr}, {"params": list(codebooks.values()), "lr": cb_lr}]
    opt = (torch.optim.Adam(groups) if qat.optimizer == "adam"
           else torch.optim.SGD(groups, momentum=qat.momentum))
    torch.manual_seed(qat.seed)  # dropout, if the config has any
    batches = random_batches(store, block_size, qat.batch_size, qat.seed, context, device)
    losses: list[float] = []
    module.train()
    bar = Progress(qat.steps, "qat", "steps", enabled=progress, leave=False)
    for _ in range(qat.steps):
        indices = {}
        with torch.no_grad():
            for n, p in params.items():
                cb = codebooks[init.group(n)]
                idx = nearest_index(latent[n], cb)
                indices[n] = idx
                p.copy_(cb[idx])
        x, y, seg = next(batches)
        module.zero_grad(set_to_none=True)
        loss = model_loss(module, x, y, seg)
        loss.backward()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for g, cb in codebooks.items():
                cb.grad = torch.zeros_like(cb)
            for n, p in params.items():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                latent[n].grad = grad.clone()                               # straight-through
                cb = codebooks[init.group(n)]
                cb.grad.index_add_(0, indices[n].reshape(-1), grad.reshape(-1))   # d loss / d level
            for g, cb in codebooks.items():
                cb.grad[zero_level[g]] = 0.0
        opt.step()
        with torch.no_grad():
            for g, cb in codebooks.items():
                cb[zero_level[g]] = 0.0   # Adam's update is zero for a zero gradient, but keep it exact
        losses.append(float(loss.detach()) / math.log(2))
        bar.set_postfix(loss_bits=f"{losses[-1]:.3f}")
        bar.update(1)
    bar.close()
    module.eval()
    final_codebooks = {g: cb.detach().cpu().numpy().astype(np.float64) for g, cb in codebooks.items()}
    final = quantize_state({n: w.detach().cpu() for n, w in latent.items()}, quant, codebooks=final_codebooks)
    with torch.no_grad():
        for n, a in final.dequantize().items():
            params[n].copy_(torch.from_numpy(np.ascontiguousarray(a)).to(params[n].dtype))
    log = {"qat": qat.to_dict(), "steps_run": len(losses),
           "train_loss_bits_first": losses[0] if losses else None,
           "train_loss_bits_last": float(np.mean(losses[-10:])) if losses else None,
           "initial_relative_error": init.stats["relative_error"],
           "final_relative_error": final.stats["relative_error"]}
    return final, log
