"""The PTQ codec: a pretrained HF / GGUF model's weights <-> the three bitstream files of a ``ptq`` CompressedModel.

Method spec ``ptq:bits=2,group=64,algo=gptq,hadamard=1,calib=32`` (see ``PTQ_DEFAULTS`` for every knob):
every weight matrix of a linear layer (nn.Linear, GPT-2's Conv1D) except the output head, plus with
``embed=1`` the embeddings and an untied head, is quantized per group of ``group`` input columns to
``bits`` ∈ {2, 3, 4, 8} (``gptq.py``), optionally after a seeded randomized Hadamard rotation (``hadamard.py``);
``bits=16`` stores those weights as fp16 instead. Everything else (norms, biases, other floats) is kept in
fp16. GPTQ's Hessians come from forward hooks on ``calib`` windows of ``ctx`` tokens from the TokenStore (the
compress stage, ``compress/ptq.py``, collects them and runs this encoder; docs/pretrained.md).

Bitstream (all of it counted in message_bits):
- ``header.json``  canonical JSON: format, quantizer parameters and seed, the model config, per tensor its
                   name, shape, code and byte lengths, tied names.                          -> header_bits
- ``side.bin``     per-group scales/offsets (scale precision) and the fp16 tensors.         -> header_bits
- ``payload.bin``  the quantized integers, entropy coded per tensor (``coding.entropy``), or the fp16 weights
                   when bits = 16.                                                          -> payload_bits
Each of the three lengths gets an Elias-gamma prefix (prefix_bits); ``grid=K`` in the spec pays log2 K grid
bits for choosing this configuration among K tried after seeing data (default 1: fixed in advance).
``decode_tensors`` turns the bytes back into the dequantized weights; the ptq decoder
rebuilds the architecture from the config with transformers and loads them; ``decoded_sha256`` is computed from
exactly that decode path, run on the bytes that are written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import dumps_canonical
from ..bounds.prefix import choice_bits, elias_gamma_bits
from ..errors import TokenboundError
from . import entropy, hadamard
from .compressed import message_bits_of, parse_method, read_verified
from .gptq import GroupSpec, dequantize, gptq_quantize, rtn_quantize

PTQ_FORMAT = "tokenbound.ptq/1"
HEADER_FILE, SIDE_FILE, PAYLOAD_FILE = "header.json", "side.bin", "payload.bin"
PTQ_DEFAULTS: dict[str, Any] = {
    "bits": 4,        # 2, 3, 4, 8 (uniform grid) or 16 (fp16 weights)
    "group": 64,      # input columns per scale; -1 = one group per row
    "sym": 0,         # 1: symmetric grid without offsets
    "scale": 16,      # precision of scales/offsets in bits (16 = fp16, 32 = fp32)
    "algo": "rtn",    # rtn | gptq
    "hadamard": 0,    # 1: randomized Hadamard rotation of both sides (QuIP-style incoherence processing)
    "calib": 32,      # GPTQ calibration windows
    "ctx": 256,       # tokens per calibration / evaluation window
    "damp": 0.01,     # GPTQ damping, fraction of the mean Hessian diagonal
    "blocksize": 128,  # GPTQ lazy-batch width (rounded to a multiple of the group)
    "embed": 1,       # 1: also quantize embeddings and an untied output head (RTN for embeddings)
    "eval": 8,        # held-out windows for bits per token before/after (needs data with a val/ split)
    "grid": 1,        # number of configurations tried after seeing data (pays log2 grid bits)
}
# config keys that describe provenance, not the architecture (left out of the coded header)
_VOLATILE_CONFIG_KEYS = ("transformers_version", "quantization_config")


def ptq_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with defaults filled in and checked (errors name --method)."""
    unknown = sorted(set(params) - set(PTQ_DEFAULTS))
    if unknown:
        raise TokenboundError(f"unknown parameter(s) {unknown}; known: {sorted(PTQ_DEFAULTS)}",
                              param="method", value="ptq")
    p = {**PTQ_DEFAULTS, **params}
    for key in ("bits", "group", "sym", "scale", "hadamard", "calib", "ctx", "blocksize", "embed", "eval", "grid"):
        if not isinstance(p[key], int) or isinstance(p[key], bool):
            raise TokenboundError(f"{key} must be an integer, got {p[key]!r}", param="method", value="ptq")
    if p["bits"] not in (2, 3, 4, 8, 16):
        raise TokenboundError(f"bits must be one of 2, 3, 4, 8, 16, got {p['bits']}", param="method", value="ptq")
    if p["algo"] not in ("rtn", "gptq"):
        raise TokenboundError(f"algo must be rtn or gptq, got {p['algo']!r}", param="method", value="ptq")
    if p["group"] != -1 and p["group"] < 1:
        raise TokenboundError(f"group must be >= 1 or -1, got {p['group']}", param="method", value="ptq")
    for key in ("sym", "hadamard", "embed"):
        if p[key] not in (0, 1):
            raise TokenboundError(f"{key} must be 0 or 1, got {p[key]}", param="method", value="ptq")
    if p["calib"] < 1 or p["ctx"] < 2 or p["blocksize"] < 1 or p["eval"] < 0 or p["grid"] < 1:
        raise TokenboundError("calib, blocksize, grid must be >= 1, ctx >= 2 and eval >= 0",
                              param="method", value="ptq")
    if not (isinstance(p["damp"], (int, float)) and 0 < float(p["damp"]) < 1):
        raise TokenboundError(f"damp must be in (0, 1), got {p['damp']!r}", param="method", value="ptq")
    if p["bits"] != 16:
        GroupSpec(p["bits"], max(p["group"], 1), bool(p["sym"]), p["scale"])  # validates scale precision
    return p


# -- which tensors are quantized -------------------------------------------------------------------------------
def quant_targets(module: torch.nn.Module, embed: bool) -> dict[str, dict[str, Any]]:
    """weight name -> {"kind": "linear" | "embed", "transpose": bool, "module": the owning module}.

    Linear weights are [out, in]; GPT-2's Conv1D stores [in, out] (transpose=True). The output head is
    quantized only with ``embed`` (when tied to the input embedding it is the same tensor, coded once)."""
    head = module.get_output_embeddings()
    out: dict[str, dict[str, Any]] = {}
    for name, sub in module.named_modules():
        w = getattr(sub, "weight", None)
        if not isinstance(w, torch.Tensor) or w.ndim != 2:
            continue
        cls = type(sub).__name__
        if isinstance(sub, torch.nn.Embedding):
            kind, transpose = "embed", False
        elif isinstance(sub, torch.nn.Linear) or cls == "Conv1D":
            kind, transpose = ("head" if sub is head else "linear"), cls == "Conv1D"
        else:
            continue
        if kind != "linear" and not embed:
            continue
        out[f"{name}.weight"] = {"kind": kind, "transpose": transpose, "module": sub}
    return out


def _tied_names(module: torch.nn.Module) -> dict[str, str]:
    """state_dict name -> first name sharing its storage (only for names that are duplicates)."""
    first: dict[tuple[int, tuple[int, ...]], str] = {}
    ties: dict[str, str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        key = (t.data_ptr(), tuple(t.shape))
        if t.numel() and key in first:
            ties[name] = first[key]
        else:
            first.setdefault(key, name)
    return ties


def _config_dict(module: torch.nn.Module) -> dict[str, Any]:
    cfg = module.config.to_dict()
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}


# -- encoding -------------------------------------------------------------------------------------------------------
def _encode_quantized(w: np.ndarray, spec: GroupSpec, hess: np.ndarray | None, p: dict[str, Any], name: str,
                      seed: int) -> tuple[bytes, bytes]:
    """(payload section: entropy-coded symbols, side section: scales [+ offsets]) of W [out, in]."""
    if p["hadamard"]:
        s_out, s_in = hadamard.rotation_signs(w.shape, seed, name)
        w = hadamard.rotate_weight(w, s_out, s_in)
        if hess is not None:
            hess = hadamard.rotate_hessian(hess, s_in)
    wt = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    if hess is not None:
        sym, scales, offsets = gptq_quantize(wt, torch.from_numpy(hess), spec, float(p["damp"]), p["blocksize"])
    else:
        sym, scales, offsets = rtn_quantize(wt, spec)
    side = scales.astype(scales.dtype.newbyteorder("<")).tobytes()
    if not spec.sym:
        side += offsets.astype(offsets.dtype.newbyteorder("<")).tobytes()
    return entropy.encode_symbols(sym.reshape(-1), alphabet_size=spec.levels), side


def _fp16_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().float().numpy().astype("<f2").tobytes()


def encode_model(module: torch.nn.Module, p: dict[str, Any], hessians: dict[str, np.ndarray], seed: int
                 ) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    """(header bytes, side bytes, payload bytes, stats) for the module under parameters `p`."""
    from ..progress import track

    targets = quant_targets(module, bool(p["embed"]))
    ties = _tied_names(module)
    entries, side, payload = [], bytearray(), bytearray()
    stats: dict[str, Any] = {"quantized_params": 0, "fp16_params": 0, "tensors": {}, "quantized_names": []}
    state = {k: v for k, v in module.state_dict().items() if k not in ties}
    for name in track(sorted(state), "ptq encode", "tensors"):
        t = state[name]
        entry: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
        if name in targets and p["bits"] != 16:
            info = targets[name]
            w = t.detach().cpu().float().numpy()
            w = w.T if info["transpose"] else w
            group = w.shape[1] if p["group"] == -1 else min(p["group"], w.shape[1])
            spec = GroupSpec(p["bits"], group, bool(p["sym"]), p["scale"])
            use_gptq = p["algo"] == "gptq" and info["kind"] != "embed"
            pay, sid = _encode_quantized(w, spec, hessians.get(name) if use_gptq else None, p, name, seed)
            entry.update(code="q", transpose=info["transpose"], group=group, algo="gptq" if use_gptq else "rtn")
            stats["quantized_params"] += t.numel()
            stats["quantized_names"].append(name)
        elif name in targets:
            pay, sid = _fp16_bytes(t), b""
            entry.update(code="f16")
            stats["quantized_params"] += t.numel()
            stats["quantized_names"].append(name)
        elif t.is_floating_point():
            pay, sid = b"", _fp16_bytes(t)
            entry.update(code="f16")
            stats["fp16_params"] += t.numel()
        else:  # integer buffers: stored verbatim
            pay, sid = b"", t.detach().cpu().numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
            entry.update(code="raw")
        entry.update(payload=len(pay), side=len(sid))
        payload += pay
        side += sid
        entries.append(entry)
        stats["tensors"][name] = 8 * (len(pay) + len(sid))
    quantizer = {k: p[k] for k in ("bits", "group", "sym", "scale", "hadamard", "embed")}
    header = {"format": PTQ_FORMAT, "quantizer": quantizer, "seed": int(seed), "config": _config_dict(module),
              "tensors": entries, "ties": ties}
    return dumps_canonical(header).encode(), bytes(side), bytes(payload), stats


# -- decoding -------------------------------------------------------------------------------------------------------
def _decode_tensor(entry: dict[str, Any], q: dict[str, Any], pay: bytes, sid: bytes, seed: int) -> np.ndarray:
    shape = tuple(entry["shape"])
    if entry["code"] == "raw":
        return np.frombuffer(sid, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(shape).copy()
    if entry["code"] == "f16":
        raw = pay if entry["payload"] else sid
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    rows, cols = (shape[1], shape[0]) if entry["transpose"] else shape
    spec = GroupSpec(q["bits"], entry["group"], bool(q["sym"]), q["scale"])
    G = spec.num_groups(cols)
    nscale = rows * G * spec.scale_dtype.itemsize
    scales = np.frombuffer(sid[:nscale], dtype=spec.scale_dtype.newbyteorder("<")).reshape(rows, G)
    offsets = None if spec.sym else np.frombuffer(sid[nscale:], dtype=spec.scale_dtype.newbyteorder("<")).reshape(rows, G)
    symbols = entropy.decode_symbols(pay)
    if symbols.size != rows * cols or (symbols.size and symbols.max() >= spec.levels):
        raise TokenboundError(f"{entry['name']}: decoded symbols do not fit shape {shape} / {spec.levels} levels")
    w = dequantize(symbols.reshape(rows, cols), scales, offsets, spec)
    if q["hadamard"]:
        s_out, s_in = hadamard.rotation_signs((rows, cols), seed, entry["name"])
        w = hadamard.unrotate_weight(w, s_out, s_in).astype(np.float32)
    return np.ascontiguousarray(w.T if entry["transpose"] else w)


def decode_tensors(header_bytes: bytes, side: bytes, payload: bytes, where: str = "ptq"
                   ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, state_dict) from the three byte strings: every tensor dequantized, tied names filled in. The
    model is rebuilt from ``header["config"]`` by the ptq decoder."""
    try:
        header = json.loads(header_bytes)
        q, entries, ties, seed = header["quantizer"], header["tensors"], header["ties"], header["seed"]
        if header["format"] != PTQ_FORMAT:
            raise ValueError(f"format {header['format']!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise TokenboundError(f"{where}/{HEADER_FILE}: not a PTQ header ({e})") from None
    if sum(e["payload"] for e in entries) != len(payload) or sum(e["side"] for e in entries) != len(side):
        raise TokenboundError(f"{where}: section lengths in the header do not match payload/side sizes")
    state: dict[str, torch.Tensor] = {}
    po = so = 0
    for entry in entries:
        pay, sid = payload[po:po + entry["payload"]], side[so:so + entry["side"]]
        po, so = po + entry["payload"], so + entry["side"]
        arr = _decode_tensor(entry, q, pay, sid, seed)
        state[entry["name"]] = torch.from_numpy(arr).to(getattr(torch, entry["dtype"]))
    for name, target in ties.items():
        state[name] = state[target]
    return header, state


def measured_message_bits(path: Path, manifest: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(message bits, breakdown) measured from the three files themselves (docs/compression.md): their exact
    lengths (header.json and side.bin are header, payload.bin payload), the header decoded and its section
    lengths checked against the files, one Elias-gamma prefix per length recomputed; grid bits from the
    ``grid`` of the recorded method spec."""
    path = Path(path)
    header_bytes, side, payload = (read_verified(path, manifest, f) for f in (HEADER_FILE, SIDE_FILE, PAYLOAD_FILE))
    try:
        header = json.loads(header_bytes)
        entries = header["tensors"]
        if header["format"] != PTQ_FORMAT:
            raise ValueError(f"format {header['format']!r}")
        pay_len, side_len = sum(int(e["payload"]) for e in entries), sum(int(e["side"]) for e in entries)
    except (ValueError, KeyError, TypeError) as e:
        raise TokenboundError(f"{path / HEADER_FILE}: not a PTQ header ({e})") from None
    if pay_len != len(payload) or side_len != len(side):
        raise TokenboundError(f"{path / HEADER_FILE}: section lengths do not match {SIDE_FILE}/{PAYLOAD_FILE} sizes")
    name, params = parse_method(str(manifest.get("method")))
    if name != "ptq":
        raise TokenboundError(f"{path / 'manifest.json'}: method {manifest.get('method')!r} is not a ptq spec")
    hb, sb, pb = 8 * len(header_bytes), 8 * len(side), 8 * len(payload)
    breakdown = {"payload_bits": pb, "header_bits": hb + sb,
                 "prefix_bits": sum(elias_gamma_bits(max(b, 1)) for b in (hb, sb, pb)),
                 "grid_bits": choice_bits(ptq_params(params)["grid"])}
    return message_bits_of(breakdown), breakdown
