"""Codebook quantization of the coded (trainable) tensors and its prefix-free message (docs/compression.md).

A tensor is replaced by symbols in [0, K) and a codebook of K levels (K odd, zero always a level, levels
stored in fp16 so the decoder reproduces them bit for bit). Codebooks are per tensor (``scope="tensor"``) or
shared by all coded tensors (``scope="global"``); levels start uniform over [-c, c] (c a high quantile of |w|)
and are refined by Lloyd's algorithm (k-means in 1-D) unless ``codebook="uniform"``.

The message (``payload.bin``) is, byte for byte, what the decoder reads:

    varint(len(H)) · H · S_1 · S_2 · …

where H is the zlib-compressed canonical JSON header (model config incl. the seeds of the frozen parts, tensor
names, shapes, dtypes, fp16 codebooks, quantization config) and each S_i is a self-contained
``coding.entropy.encode_symbols`` stream (its symbol counts, the ANS-coded words and a CRC32; self-delimiting).
The message length the bound uses is ``8·len(payload.bin)`` plus the Elias-gamma code of its byte length plus
the grid bits of any data-dependent choice (e.g. the level count). The body is already self-delimiting (the
header carries its length, every stream knows its end); the Elias-gamma prefix is kept anyway so that the
prefix-freeness of the total does not rest on the internals of zlib and of the stream format (a few dozen bits).
Frozen seeded tensors (non-persistent buffers) are never coded: only their seed travels, inside the config.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..artifacts import dumps_canonical
from ..bounds.prefix import choice_bits, elias_gamma_bits
from ..errors import TokenboundError
from . import entropy
from .compressed import parse_method, read_verified

PAYLOAD = "payload.bin"
FORMAT = "tokenbound.quant/1"
SCOPES = ("tensor", "global")
CODEBOOKS = ("kmeans", "uniform")
STREAMS = ("tensor", "joint")
# method spec keys: quant:... (grid = level counts to choose among after seeing the data), and qat:..., which adds
# the fine-tuning schedule of the compress stage (compress/qat.py) and fixes the level count in advance
QUANT_KEYS = frozenset({"levels", "scope", "codebook", "clip", "iters", "stream", "grid"})
QAT_KEYS = QUANT_KEYS - {"grid"} | {"steps", "lr", "codebook_lr", "batch", "optimizer", "momentum"}


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize. ``levels`` odd >= 3 so that zero sits in a symmetric grid; ``clip`` is the quantile of
    |w| that sets the initial range [-c, c]; ``iters`` Lloyd iterations (0 = keep the uniform grid)."""

    levels: int = 11
    scope: str = "tensor"
    codebook: str = "kmeans"
    clip: float = 0.999
    iters: int = 25
    stream: str = "tensor"

    def __post_init__(self):
        if self.levels < 3 or self.levels % 2 == 0 or self.levels > 65535:
            raise TokenboundError(f"levels must be an odd integer >= 3, got {self.levels}", param="method")
        if self.scope not in SCOPES:
            raise TokenboundError(f"scope must be one of {'|'.join(SCOPES)}, got {self.scope!r}", param="method")
        if self.codebook not in CODEBOOKS:
            raise TokenboundError(f"codebook must be one of {'|'.join(CODEBOOKS)}, got {self.codebook!r}",
                                  param="method")
        if self.stream not in STREAMS:
            raise TokenboundError(f"stream must be one of {'|'.join(STREAMS)}, got {self.stream!r}", param="method")
        if not 0.5 <= self.clip <= 1.0:
            raise TokenboundError(f"clip must be a quantile in [0.5, 1], got {self.clip}", param="method")
        if self.iters < 0:
            raise TokenboundError(f"iters must be >= 0, got {self.iters}", param="method")

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "scope": self.scope, "codebook": self.codebook, "clip": self.clip,
                "iters": self.iters, "stream": self.stream}


def parse_quant_spec(name: str, params: Mapping[str, Any], spec: str) -> tuple[QuantConfig, list[int] | None]:
    """(QuantConfig, level grid or None) of a ``quant:``/``qat:`` method spec's parameters (errors name ``method``).

    Keys outside ``QUANT_KEYS`` (``QAT_KEYS`` for qat) are refused; the qat schedule keys are left to the caller.
    """
    allowed = QUANT_KEYS if name == "quant" else QAT_KEYS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TokenboundError(f"unknown parameter(s) {', '.join(unknown)} for {name} "
                              f"(known: {', '.join(sorted(allowed))})", param="method", value=spec)
    grid = None
    if "grid" in params:
        if "levels" in params:
            raise TokenboundError("give levels or grid, not both", param="method", value=spec)
        try:
            grid = sorted({int(v) for v in str(params["grid"]).split("/")})
        except ValueError:
            raise TokenboundError("grid must be level counts separated by '/', e.g. 5/7/11",
                                  param="method", value=spec) from None
    q_kw = {k: params[k] for k in ("scope", "codebook", "stream") if k in params}
    for k, conv in (("levels", int), ("iters", int), ("clip", float)):
        if k in params:
            if not isinstance(params[k], (int, float)) or (conv is int and not float(params[k]).is_integer()):
                raise TokenboundError(f"{k} must be a number, got {params[k]!r}", param="method", value=spec)
            q_kw[k] = conv(params[k])
    quant = QuantConfig(**q_kw)
    for k in grid or []:
        QuantConfig(**{**q_kw, "levels": k})   # validates every candidate up front
    return quant, grid


@dataclass
class Quantized:
    """Symbols and fp16 codebooks of a set of named tensors (names sorted; the order everything is coded in).

    Invariant: ``dequantize()[name] == codebooks[group(name)][symbols[name]]`` exactly, cast to the tensor's dtype.
    """

    symbols: dict[str, np.ndarray]          # name -> int array of the tensor's shape, values in [0, K)
    codebooks: dict[str, np.ndarray]        # group ("*" for global, else the tensor name) -> float16 [K]
    dtypes: dict[str, str]                  # name -> numpy dtype name of the original tensor
    config: QuantConfig
    stats: dict[str, Any] = field(default_factory=dict)

    def group(self, name: str) -> str:
        return "*" if self.config.scope == "global" else name

    def dequantize(self) -> dict[str, np.ndarray]:
        return {n: self.codebooks[self.group(n)].astype(self.dtypes[n])[s] for n, s in self.symbols.items()}

    @property
    def num_symbols(self) -> int:
        return int(sum(s.size for s in self.symbols.values()))


# ---------------------------------------------------------------------------------------------- codebooks
def nearest_level(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest level for each value (codebook sorted ascending; ties go to the lower level)."""
    cb = np.asarray(codebook, dtype=np.float64)
    mids = (cb[1:] + cb[:-1]) / 2
    return np.searchsorted(mids, values, side="left").astype(np.int32)


def uniform_codebook(values: np.ndarray, levels: int, clip: float) -> np.ndarray:
    """K evenly spaced levels over [-c, c], c = the `clip` quantile of |values|; K odd so 0 is the middle level."""
    a = np.abs(values)
    c = float(np.quantile(a, clip)) if a.size else 0.0
    if c == 0.0:
        c = float(a.max()) if a.size else 0.0
    return np.linspace(-c, c, levels)


def lloyd_codebook(values: np.ndarray, init: np.ndarray, iters: int) -> np.ndarray:
    """Lloyd's algorithm (1-D k-means) from `init`, with the zero level pinned at exactly 0.

    Each iteration assigns values to the nearest level and moves every non-zero level to the mean of its cell;
    an empty level is re-seeded inside the cell with the largest squared error (so no level is wasted, e.g. the
    negative half of a codebook for an all-positive LayerNorm gain). The mean squared error never increases.
    Returns sorted levels containing 0.
    """
    cb = np.sort(np.asarray(init, dtype=np.float64))
    if values.size == 0:
        return cb
    x = np.asarray(values, dtype=np.float64).ravel()
    for _ in range(iters):
        idx = nearest_level(x, cb)
        counts = np.bincount(idx, minlength=cb.size)
        sums = np.bincount(idx, weights=x, minlength=cb.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), cb)
        sq = np.bincount(idx, weights=x * x, minlength=cb.size)
        sse = np.maximum(sq - np.where(counts > 0, sums * sums / np.maximum(counts, 1), 0.0), 0.0)
        zero = int(np.argmin(np.abs(cb)))
        new[zero] = 0.0
        for e in np.flatnonzero(counts == 0):
            if e == zero:
                continue
            worst = int(np.argmax(sse))
            if sse[worst] <= 0:
                break
            # split the worst cell: put the empty level one standard deviation off the cell's centre
            std = np.sqrt(sse[worst] / counts[worst])
            centre = new[worst]
            new[e] = centre + std if centre >= 0 else centre - std
            sse[worst] = 0.0
        new = np.sort(new)
        if np.array_equal(new, cb):
            break
        cb = new
    return cb


def make_codebook(values: np.ndarray, config: QuantConfig) -> np.ndarray:
    """fp16 codebook for `values`: uniform init, optional Lloyd refinement, rounded to fp16, 0 a level."""
    cb = uniform_codebook(values, config.levels, config.clip)
    if config.codebook == "kmeans" and config.iters > 0:
        cb = lloyd_codebook(values, cb, config.iters)
    return to_fp16_codebook(cb)


def to_fp16_codebook(levels: np.ndarray) -> np.ndarray:
    """Round levels to fp16 (what the header stores), keep them sorted and keep an exact 0 level."""
    cb = np.sort(np.asarray(levels, dtype=np.float64).astype(np.float16))
    cb[np.argmin(np.abs(cb.astype(np.float64)))] = 0.0
    return np.sort(cb)


def _as_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def quantize_state(state: Mapping[str, Any], config: QuantConfig,
                   codebooks: Mapping[str, np.ndarray] | None = None) -> Quantized:
    """Quantize named tensors (torch or numpy) to symbols + fp16 codebooks.

    With `codebooks` given (e.g. fine-tuned by QAT) they are used as they are (rounded to fp16); otherwise
    they are fitted here. Symbols are always the nearest level of the fp16 codebook, i.e. of what the decoder uses.
    """
    names = sorted(state)
    arrays = {n: _as_numpy(state[n]) for n in names}
    for n, a in arrays.items():
        if a.dtype.kind != "f":
            raise TokenboundError(f"coded tensor {n}: expected a floating-point tensor, got {a.dtype}")
    if codebooks is None:
        if config.scope == "global":
            allv = np.concatenate([arrays[n].astype(np.float64).ravel() for n in names]) if names else np.zeros(0)
            cbs = {"*": make_codebook(allv, config)}
        else:
            cbs = {n: make_codebook(arrays[n].astype(np.float64).ravel(), config) for n in names}
    else:
        cbs = {g: to_fp16_codebook(c) for g, c in codebooks.items()}
    q = Quantized(symbols={}, codebooks=cbs, dtypes={n: arrays[n].dtype.name for n in names}, config=config)
    sq_err = 0.0
    sq_norm = 0.0
    for n in names:
        x = arrays[n].astype(np.float64)
        cb = cbs[q.group(n)]
        sym = nearest_level(x.ravel(), cb.astype(np.float64)).reshape(x.shape)
        q.symbols[n] = sym
        sq_err += float(np.sum((cb.astype(np.float64)[sym] - x) ** 2))
        sq_norm += float(np.sum(x * x))
    q.stats = {"relative_error": float(np.sqrt(sq_err / sq_norm)) if sq_norm > 0 else 0.0,
               "num_symbols": q.num_symbols}
    return q


# ----------------------------------------------------------------------------------------------- message
def _header_dict(q: Quantized, model_config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model_config": dict(model_config),   # includes the seed that regenerates every frozen tensor
        "quant": q.config.to_dict(),
        "tensors": [{"name": n, "shape": list(q.symbols[n].shape), "dtype": q.dtypes[n]} for n in sorted(q.symbols)],
        "codebooks": {g: cb.astype("<f2").tobytes().hex() for g, cb in sorted(q.codebooks.items())},
    }


def encode_message(q: Quantized, model_config: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The payload bytes and the itemised length (docs/design.md §4 message_breakdown, without grid bits).

    Streams: one per tensor (``stream="tensor"``: each tensor gets its own symbol counts, so its bits are exact
    and per-tensor statistics are exploited) or one for all tensors (``stream="joint"``: a single set of counts,
    cheaper when there are many small tensors).
    """
    header = zlib.compress(dumps_canonical(_header_dict(q, model_config)).encode(), 9)
    names = sorted(q.symbols)
    K = q.config.levels
    if q.config.stream == "joint":
        flat = np.concatenate([q.symbols[n].ravel() for n in names]) if names else np.zeros(0, np.int32)
        streams = [entropy.encode_symbols(flat, K)]
    else:
        streams = [entropy.encode_symbols(q.symbols[n].ravel(), K) for n in names]
    # Streams are self-delimiting (entropy.decode_symbols_from knows where each ends), so only the header
    # needs a length in front of it.
    framing = entropy.varint_encode([len(header)])
    body = b"".join([framing, header, *streams])
    # payload = the coded words; each stream's own counts, lengths and CRC32 are header (docs/design.md §4)
    payload_bits = 8 * sum(entropy.symbol_stream_extent(s)[1] for s in streams)
    stream_overhead_bits = 8 * sum(len(s) for s in streams) - payload_bits
    if q.config.stream == "joint":
        tensor_bits = _ideal_bits_per_tensor(q, payload_bits)
    else:
        tensor_bits = {n: 8 * len(s) for n, s in zip(names, streams)}
    breakdown = {
        "payload_bits": payload_bits,
        "header_bits": 8 * (len(header) + len(framing)) + stream_overhead_bits,
        "prefix_bits": elias_gamma_bits(len(body)),
        "grid_bits": 0.0,
        "tensors": tensor_bits,
        "model_header_bytes": len(header),
        "stream_overhead_bits": stream_overhead_bits,
        "streams": len(streams),
    }
    return body, breakdown


def _ideal_bits_per_tensor(q: Quantized, payload_bits: int) -> dict[str, float]:
    """Share of a joint stream per tensor: its ideal code length under the joint counts, scaled to the total."""
    names = sorted(q.symbols)
    counts = np.zeros(q.config.levels, dtype=np.float64)
    for n in names:
        counts += np.bincount(q.symbols[n].ravel(), minlength=q.config.levels)
    cost = -np.log2(np.where(counts > 0, counts / max(counts.sum(), 1), 1.0))
    ideal = {n: float(cost[q.symbols[n].ravel()].sum()) for n in names}
    total = sum(ideal.values())
    return {n: (v / total * payload_bits if total > 0 else 0.0) for n, v in ideal.items()}


def decode_message(body: bytes, where: str = PAYLOAD) -> tuple[Quantized, dict[str, Any]]:
    """Inverse of `encode_message`: (Quantized, model config). Corruption -> TokenboundError naming `where`."""
    try:
        hlen, off = entropy.read_varint(body, 0)
        header = json.loads(zlib.decompress(body[off:off + hlen]).decode())
        off += hlen
    except (zlib.error, UnicodeDecodeError, ValueError, IndexError) as e:
        raise TokenboundError(f"{where}: corrupted header ({e})") from None
    if header.get("format") != FORMAT:
        raise TokenboundError(f"{where}: unknown format {header.get('format')!r}, expected {FORMAT}")
    config = QuantConfig(**header["quant"])
    tensors = header["tensors"]
    codebooks = {g: np.frombuffer(bytes.fromhex(h), dtype="<f2").astype(np.float16) for g, h in header["codebooks"].items()}
    n_streams = 1 if config.stream == "joint" else len(tensors)
    streams = []
    for _ in range(n_streams):
        sym, off = entropy.decode_symbols_from(body, off)
        streams.append(sym)
    if off != len(body):
        raise TokenboundError(f"{where}: {len(body) - off} trailing bytes after the last stream")
    sizes = [int(np.prod(t["shape"], dtype=np.int64)) for t in tensors]
    if config.stream == "joint":
        flat = streams[0]
        if flat.size != sum(sizes):
            raise TokenboundError(f"{where}: stream holds {flat.size} symbols, header says {sum(sizes)}")
        pieces = np.split(flat, np.cumsum(sizes)[:-1]) if tensors else []
    else:
        pieces = streams
    q = Quantized(symbols={}, codebooks=codebooks, dtypes={}, config=config)
    for t, sym, size in zip(tensors, pieces, sizes):
        if sym.size != size:
            raise TokenboundError(f"{where}: tensor {t['name']} has {sym.size} symbols, header says {size}")
        q.symbols[t["name"]] = np.asarray(sym, dtype=np.int64).reshape(t["shape"])
        q.dtypes[t["name"]] = t["dtype"]
    return q, header["model_config"]


def message_bits(breakdown: Mapping[str, Any]) -> float:
    """Total prefix-free length: header + payload + Elias-gamma prefix + grid bits."""
    return (breakdown["payload_bits"] + breakdown["header_bits"] + breakdown["prefix_bits"]
            + breakdown["grid_bits"])


# ----------------------------------------------------------------------------------------------- decoder
def decoded_state(q: Quantized) -> dict[str, Any]:
    """The dequantized coded tensors as torch tensors (what the model evaluates and the manifest hashes)."""
    import torch

    return {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in q.dequantize().items()}


def measured_message_bits(path: Path, manifest: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
    """(message bits, breakdown) measured from ``payload.bin`` itself (docs/compression.md): its exact byte length,
    the header decoded, every stream walked to its end (the ANS words are payload, the rest header), the
    Elias-gamma code of the byte length recomputed; grid bits from the grid in the recorded method spec."""
    path = Path(path)
    where = str(path / PAYLOAD)
    body = read_verified(path, dict(manifest), PAYLOAD)
    try:
        hlen, off = entropy.read_varint(body, 0)
        header = json.loads(zlib.decompress(body[off:off + hlen]).decode())
        off += hlen
        n_streams = 1 if header["quant"]["stream"] == "joint" else len(header["tensors"])
    except (zlib.error, UnicodeDecodeError, ValueError, IndexError, KeyError, TypeError) as e:
        raise TokenboundError(f"{where}: corrupted header ({e})") from None
    if header.get("format") != FORMAT:
        raise TokenboundError(f"{where}: unknown format {header.get('format')!r}, expected {FORMAT}")
    word_bytes = 0
    for _ in range(n_streams):
        off, words = entropy.symbol_stream_extent(body, off)
        word_bytes += words
    if off != len(body):
        raise TokenboundError(f"{where}: {len(body) - off} trailing bytes after the last stream")
    spec = str(manifest.get("method"))
    name, params = parse_method(spec)
    if name not in ("quant", "qat"):
        raise TokenboundError(f"{path / 'manifest.json'}: method {spec!r} is not a quant/qat spec")
    _quant, grid = parse_quant_spec(name, params, spec)
    breakdown = {"payload_bits": 8 * word_bytes, "header_bits": 8 * (len(body) - word_bytes),
                 "prefix_bits": elias_gamma_bits(len(body)),
                 "grid_bits": 0.0 if grid is None else choice_bits(len(grid))}
    return float(message_bits(breakdown)), breakdown
