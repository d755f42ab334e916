"""``quant:`` and ``qat:`` compression of a trained Run's coded tensors into a CompressedModel (decoder "quant").

``quant:levels=K`` quantizes with the codebook quantizer (``coding.quantize``); ``grid=5/7/11/15`` instead of
``levels`` picks the level count after seeing the data, by the two-part code length of the training set
(message bits + m · training bits per token, m = training tokens, the loss on fixed batches), and pays
log2 |grid| grid bits. ``qat:levels=K,steps=N`` first fine-tunes through the quantizer (``compress.qat``).
The message is decoded back and compared with what was quantized before it is written (docs/compression.md).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..artifacts import path_record
from ..bounds.prefix import choice_bits
from ..coding.compressed import write_compressed
from ..coding.hashing import state_sha256
from ..coding.quantize import (PAYLOAD, QuantConfig, decode_message, decoded_state, encode_message,
                               parse_quant_spec, quantize_state)
from ..errors import TokenboundError
from ..models.gpt import coded_state_dict, derive_seed, load_coded_state_dict, load_run_module, parameter_counts
from .qat import QATConfig, mean_loss_bits, quantization_aware_training
from .inputs import open_training_store, source_record, training_stores_record

GRID_EVAL_BATCHES = 8
EVAL_BATCH_SIZE = 16


def parse_quant_params(name: str, params: dict[str, Any], spec: str, seed: int
                       ) -> tuple[QuantConfig, QATConfig | None, list[int] | None]:
    """(QuantConfig, QATConfig or None, level grid or None) from the method parameters; errors name ``method``."""
    quant, grid = parse_quant_spec(name, params, spec)
    qat = None
    if name == "qat":
        kw: dict[str, Any] = {"seed": seed}
        for k, field, conv in (("steps", "steps", int), ("lr", "lr", float), ("codebook_lr", "codebook_lr", float),
                               ("batch", "batch_size", int), ("momentum", "momentum", float)):
            if k in params:
                if not isinstance(params[k], (int, float)):
                    raise TokenboundError(f"{k} must be a number, got {params[k]!r}", param="method", value=spec)
                kw[field] = conv(params[k])
        if "optimizer" in params:
            kw["optimizer"] = str(params["optimizer"])
        qat = QATConfig(**kw)
    return quant, qat, grid


def compress_run(run: Path, out: Path, name: str, params: dict[str, Any], spec: str, *, data=None,
                 force: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """quant/qat of a Run's coded tensors -> CompressedModel (decoder "quant"); returns the manifest."""
    quant, qat, grid = parse_quant_params(name, params, spec, seed)
    module, cfg = load_run_module(run, device=device)
    counts = parameter_counts(module)
    original = {n: t.clone() for n, t in coded_state_dict(module).items()}
    extra: dict[str, Any] = {}
    grid_bits = 0.0
    store = open_training_store(run, data) if data is not None else None  # checked before any work

    def train_bits(eval_seed: int) -> float:
        return mean_loss_bits(module, store, cfg.block_size, cfg.context, num_batches=GRID_EVAL_BATCHES,
                              batch_size=EVAL_BATCH_SIZE, seed=eval_seed)

    if grid is not None:
        # Two-part code length of the training set, m * (bits/token) + message bits, estimated on fixed batches.
        store = store or open_training_store(run, data)
        eval_seed = derive_seed(seed, "compress-grid")
        scores = {}
        for k in grid:
            qk = quantize_state(original, dataclasses.replace(quant, levels=k))
            body, bd = encode_message(qk, cfg.to_dict())
            load_coded_state_dict(module, decoded_state(qk))
            loss = train_bits(eval_seed)
            msg = bd["payload_bits"] + bd["header_bits"] + bd["prefix_bits"]
            scores[k] = {"train_bits_per_token": loss, "message_bits": msg,
                         "two_part_bits": msg + store.num_tokens * loss}
        best = min(grid, key=lambda k: scores[k]["two_part_bits"])
        quant = dataclasses.replace(quant, levels=best)
        grid_bits = choice_bits(len(grid))
        extra["grid"] = {"levels": grid, "chosen": best, "criterion": "message_bits + m * train_bits_per_token",
                         "m": store.num_tokens, "eval_seed": eval_seed,
                         "scores": {str(k): v for k, v in scores.items()}}
        load_coded_state_dict(module, original)
    if qat is not None:
        store = store or open_training_store(run, data)
        qat = dataclasses.replace(qat, seed=derive_seed(seed, "qat"))
        eval_seed = derive_seed(seed, "qat-eval")
        plain = quantize_state(original, quant)
        load_coded_state_dict(module, decoded_state(plain))
        before = train_bits(eval_seed)
        load_coded_state_dict(module, original)
        q, log = quantization_aware_training(module, store, cfg.block_size, cfg.context, quant, qat, progress)
        after = train_bits(eval_seed)
        extra["qat_log"] = {**log, "train_bits_per_token_plain_quant": before, "train_bits_per_token_qat": after,
                            "eval_seed": eval_seed, "data": path_record(store.path, out)}
    else:
        q = quantize_state(original, quant)
    body, breakdown = encode_message(q, cfg.to_dict())
    breakdown["grid_bits"] = grid_bits
    decoded_q, _ = decode_message(body)
    state = decoded_state(decoded_q)
    if state_sha256(state) != state_sha256(decoded_state(q)):
        raise RuntimeError("quantize: the message does not decode to the quantized state (bug)")
    return write_compressed(
        out, method=spec, decoder="quant", source=source_record("run", run), files={PAYLOAD: body},
        breakdown=breakdown, decoded_sha256=state_sha256(state), force=force,
        training_stores=training_stores_record(run, out, store),
        num_coded_params=q.num_symbols, frozen_params=counts["frozen"], quant=quant.to_dict(),
        relative_error=q.stats["relative_error"], seed=seed, model_config=cfg.to_dict(), **extra)
