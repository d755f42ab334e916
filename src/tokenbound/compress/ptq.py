"""``ptq:`` compression of a pretrained HF directory or .gguf file (docs/pretrained.md): load it, collect GPTQ
Hessians on calibration windows of a TokenStore, encode with the PTQ codec (``coding.ptq``), decode the bytes
back through the ptq decoder, measure held-out bits per token before and after, and write the CompressedModel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bounds.prefix import choice_bits, elias_gamma_bits
from ..coding.compressed import format_method, write_compressed
from ..coding.gptq import collect_hessians
from ..coding.hashing import state_sha256
from ..coding.ptq import HEADER_FILE, PAYLOAD_FILE, SIDE_FILE, encode_model, ptq_params, quant_targets
from ..data.store import TokenStore
from ..errors import TokenboundError
from ..evaluate.loss import mean_bits_per_token
from ..evaluate.windows import row_batches, sampled_rows
from ..models.base import segments_from_ids
from ..models.decoders import ptq_model
from ..models.hf import SEGMENT_AWARE, load_gguf, load_hf
from ..models.loading import artifact_type

HELDOUT_TAG, CALIBRATION_TAG = "ptq/heldout", "ptq/calibration"


def open_calibration_store(data: Path, model_vocab: int) -> TokenStore:
    """The TokenStore `data`, checked to be in the model's vocabulary (ids < the model's output size)."""
    store = TokenStore.open(data)
    if store.vocab_size > model_vocab:
        raise TokenboundError(f"store vocabulary {store.vocab_size} exceeds the model's {model_vocab} "
                              f"(tokenize with the model's own tokenizer)", param="data", value=data)
    return store


def _doc_segments(model: Any) -> bool:
    """Whether the architecture takes document segments (doc context rule); otherwise one stream per window."""
    return getattr(model, "model_type", None) in SEGMENT_AWARE


def heldout_bits_per_token(model: Any, store: TokenStore, windows: int, ctx: int, seed: int) -> dict[str, Any]:
    """Mean −log2 p of every token after the first in `windows` seeded windows of `store` (doc masking)."""
    rows = sampled_rows(store, windows, ctx, seed, HELDOUT_TAG, model.max_context)
    loss = mean_bits_per_token(model, row_batches(rows, store.eot, _doc_segments(model)),
                               progress="held-out bits/token", total=len(rows))
    return {"bits_per_token": loss.bits_per_token, "tokens": loss.tokens}


def compress_pretrained(src: Path, out: Path, params: dict[str, Any], data: Path | None = None,
                        force: bool = False, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Quantize the HF directory or .gguf file `src` and write it as a CompressedModel at `out`; returns the
    manifest (message length, bits per parameter, and held-out bits per token before/after when `data`
    has a val/ split). GPTQ needs `data` (a TokenStore in the model's vocabulary) for calibration."""
    src, out = Path(src), Path(out)
    if out.exists() and not force:
        raise TokenboundError("already exists (use --force to overwrite)", param="out", value=out)
    p = ptq_params(params)
    key = artifact_type(src)
    if key not in ("hf", "gguf"):
        raise TokenboundError(f"{src}: PTQ takes a Hugging Face model directory or a .gguf file, not a {key}")
    torch.manual_seed(seed)
    model = load_source(src, key, device)
    store = open_calibration_store(data, model.vocab_size) if data is not None else None
    if p["algo"] == "gptq" and p["bits"] != 16 and store is None:
        raise TokenboundError("GPTQ needs a TokenStore for calibration (or use algo=rtn)", param="data")
    val = store.val if store is not None else None
    evaluate = val is not None and p["eval"] > 0
    before = heldout_bits_per_token(model, val, p["eval"], p["ctx"], seed) if evaluate else None
    hessians: dict[str, np.ndarray] = {}
    if p["algo"] == "gptq" and p["bits"] != 16:
        targets = quant_targets(model.module, bool(p["embed"]))
        gptq_targets = {n: t["module"] for n, t in targets.items() if t["kind"] != "embed"}
        windows = sampled_rows(store, p["calib"], p["ctx"], seed, CALIBRATION_TAG, model.max_context)
        doc = _doc_segments(model)

        def forward(ids: torch.Tensor) -> torch.Tensor:
            return model.log_probs(ids, segments_from_ids(ids, store.eot) if doc else None)

        hessians = collect_hessians(forward, gptq_targets, windows)
    header, side, payload, stats = encode_model(model.module, p, hessians, seed)
    used_calibration = bool(hessians)
    del hessians
    decoded, state = ptq_model(header, side, payload, device=device, where=str(out))
    after = heldout_bits_per_token(decoded, val, p["eval"], p["ctx"], seed) if evaluate else None
    hb, sb, pb = 8 * len(header), 8 * len(side), 8 * len(payload)
    breakdown = {"payload_bits": pb, "header_bits": hb + sb,
                 "prefix_bits": sum(elias_gamma_bits(max(b, 1)) for b in (hb, sb, pb)),
                 "grid_bits": choice_bits(p["grid"]), "tensors": stats["tensors"]}
    n_params = int(sum(t.numel() for t in model.module.parameters()))
    quant_bits = sum(stats["tensors"][n] for n in stats["quantized_names"])
    extra: dict[str, Any] = {
        "params": p, "seed": int(seed), "num_coded_params": n_params,
        "quantized_params": stats["quantized_params"], "fp16_params": stats["fp16_params"],
        "bits_per_quantized_param": quant_bits / max(stats["quantized_params"], 1),
        "model": model.describe(), "file_bytes": {HEADER_FILE: len(header), SIDE_FILE: len(side),
                                                  PAYLOAD_FILE: len(payload)}}
    if used_calibration:
        extra["calibration"] = {"store": str(store.path), "sha256": store.sha256, "windows": p["calib"],
                                "ctx": p["ctx"], "seed": int(seed)}
    if evaluate:
        extra["heldout_bits_per_token"] = {"before": before["bits_per_token"], "after": after["bits_per_token"],
                                           "tokens": after["tokens"], "windows": p["eval"], "ctx": p["ctx"],
                                           "store": str(val.path), "seed": int(seed)}
    spec = {k: v for k, v in p.items() if k in params}
    return write_compressed(out, method=format_method("ptq", spec), decoder="ptq", source=model.source,
                            files={HEADER_FILE: header, SIDE_FILE: side, PAYLOAD_FILE: payload},
                            breakdown=breakdown, decoded_sha256=state_sha256(state), force=force, **extra)


def load_source(src: Path, key: str, device: str) -> Any:
    """The pretrained model to quantize: ``models.hf.load_gguf`` or ``load_hf``."""
    return (load_gguf if key == "gguf" else load_hf)(src, device=device)
