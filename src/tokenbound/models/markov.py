"""k-th order Markov-chain (n-gram) language model with a real prefix-free code for its parameters.

Context rule ``doc:k`` (docs/design.md §3). The context of position i is ext[max(i − k, j) : i] where j is the
extended index of the last eot strictly before i (ext[−1] is the virtual eot): the last k tokens of the
document prefix, the eot that opens the document included. A context shorter than k tokens (the start
of a document) is LEFT-PADDED with the reserved value PAD = V, which no token has. A context is stored as
one integer key: key = Σ_{t=1..k} d_t·(V+1)^(t−1), d_t the t-th most recent context token (or PAD), so
the order-j suffix of a context (its last j tokens) is simply key mod (V+1)^j.

Parameters: the sparse table n(c, v) of order-k context/next-token counts of the training stream. Lower
orders are marginals of it (every position contributes one event at every order). Smoothing is fixed in
advance and recorded (it is part of the hypothesis, not chosen on data):
- ``wb`` (default): interpolated Witten–Bell down to the uniform distribution,
  p_j(v|c) = (n_j(c,v) + T_j(c)·p_{j−1}(v|c')) / (n_j(c) + T_j(c)), T_j(c) = #{v : n_j(c,v) > 0},
  p_{−1} = 1/V, and p_j = p_{j−1} for an unseen order-j context.
- ``add:β``: additive, p(v|c) = (n_k(c,v) + β) / (n_k(c) + β·V) (uniform for an unseen context).

Code (``encode``): version byte | varints V, eot, order, len(smoothing) | smoothing (UTF-8) | four integer
streams (``coding.entropy.encode_integers`` without their own CRCs): context-key gaps, entries per context − 1,
token gaps within each context, counts − 1 | one CRC32 over everything. It is self-delimiting; the message
length we report adds an Elias-gamma prefix of its bit length anyway (conservative). ``save`` writes that
bitstream and ``load_markov`` rebuilds the model by decoding it, so what is scored is exactly what is coded.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import KIND_MARKOV, MANIFEST, atomic_output_dir, file_inside, make_manifest, path_record, \
    read_manifest, sha256_bytes, sha256_file, write_bytes, write_json
from ..bounds.prefix import elias_gamma_bits
from ..bounds.topk import tie_broken_rank
from ..coding.entropy import decode_integers_from, encode_integers, varint_decode, varint_encode
from ..data.context import last_eot_before
from ..errors import TokenboundError
from .base import LanguageModel

CODE_VERSION = 1
BITSTREAM = "model.tbm"
DEFAULT_SMOOTHING = "wb"
_MAX_KEY = 1 << 62


def parse_smoothing(spec: str) -> tuple[str, float]:
    """'wb' -> ('wb', 0.0); 'add:0.5' -> ('add', 0.5). One-line error otherwise."""
    spec = str(spec).strip()
    if spec == "wb":
        return "wb", 0.0
    if spec.startswith("add:"):
        try:
            beta = float(spec[4:])
        except ValueError:
            beta = -1.0
        if beta > 0 and np.isfinite(beta):
            return "add", beta
    raise TokenboundError(f"expected 'wb' or 'add:BETA' with BETA > 0, got {spec!r}", param="smoothing")


def context_keys(tokens: np.ndarray, doc_offsets: np.ndarray, order: int, vocab_size: int, eot: int,
                 positions: np.ndarray | None = None) -> np.ndarray:
    """Order-k context key of every position (or of `positions`) under the doc rule (module docstring)."""
    tokens = np.asarray(tokens)
    i = np.arange(len(tokens), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    j = last_eot_before(i, doc_offsets)
    key = np.zeros(i.shape, dtype=np.int64)
    base = np.int64(vocab_size + 1)
    weight = np.int64(1)
    for t in range(1, order + 1):
        idx = i - t
        digit = np.where(idx > j, np.asarray(tokens[np.maximum(idx, 0)], dtype=np.int64),
                         np.where(idx == j, eot, vocab_size))
        key += digit * weight
        weight *= base
    return key


@dataclass
class _OrderTable:
    """Counts of one order as CSR rows: keys[r] has entries tok[ptr[r]:ptr[r+1]] with counts cnt[...]."""

    keys: np.ndarray
    ptr: np.ndarray
    tok: np.ndarray
    cnt: np.ndarray
    vocab_size: int

    @classmethod
    def build(cls, keys: np.ndarray, tok: np.ndarray, cnt: np.ndarray, vocab_size: int) -> "_OrderTable":
        """Aggregate (key, tok, cnt) triples (any order, duplicates summed)."""
        o = np.lexsort((tok, keys))
        keys, tok, cnt = keys[o], tok[o], cnt[o]
        new = np.ones(keys.size, dtype=bool)
        new[1:] = (keys[1:] != keys[:-1]) | (tok[1:] != tok[:-1])
        starts = np.flatnonzero(new)
        cnt = np.add.reduceat(cnt, starts) if cnt.size else cnt
        keys, tok = keys[starts], tok[starts]
        row_new = np.ones(keys.size, dtype=bool)
        row_new[1:] = keys[1:] != keys[:-1]
        row_starts = np.flatnonzero(row_new)
        ptr = np.append(row_starts, keys.size).astype(np.int64)
        return cls(keys[row_starts], ptr, tok, cnt, vocab_size)

    @cached_property
    def totals(self) -> np.ndarray:
        return np.add.reduceat(self.cnt, self.ptr[:-1]) if self.cnt.size else np.zeros(0, np.int64)

    @cached_property
    def types(self) -> np.ndarray:
        return np.diff(self.ptr)

    @cached_property
    def _flat(self) -> np.ndarray:
        """row · V + tok of every entry: sorted, so one searchsorted finds any (row, token) pair."""
        row_of_entry = np.repeat(np.arange(self.keys.size, dtype=np.int64), self.types)
        return row_of_entry * self.vocab_size + self.tok

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, found mask) of each query key."""
        r = np.searchsorted(self.keys, keys)
        rc = np.minimum(r, max(self.keys.size - 1, 0))
        found = (r < self.keys.size) & (self.keys[rc] == keys) if self.keys.size else np.zeros(keys.shape, bool)
        return rc, found

    def count(self, rows: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """n(row, tok) for found rows (0 where the token never followed that context)."""
        flat = self._flat
        q = rows * self.vocab_size + tok
        pos = np.minimum(np.searchsorted(flat, q), max(flat.size - 1, 0))
        hit = flat[pos] == q if flat.size else np.zeros(q.shape, bool)
        return np.where(hit, self.cnt[pos] if flat.size else 0, 0)

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), V] count matrix of the given rows."""
        out = np.zeros((rows.size, self.vocab_size), dtype=np.float64)
        lengths = self.ptr[rows + 1] - self.ptr[rows]
        first = np.repeat(self.ptr[rows], lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[np.repeat(np.arange(rows.size), lengths), self.tok[first + within]] = self.cnt[first + within]
        return out


class MarkovModel(LanguageModel):
    """A fitted k-th order chain; build with ``fit`` or ``decode``; see the module docstring."""

    def __init__(self, table: _OrderTable, vocab_size: int, eot: int, order: int, smoothing: str):
        self.vocab_size, self.eot, self.order = int(vocab_size), int(eot), int(order)
        self.smoothing = smoothing
        self._kind, self._beta = parse_smoothing(smoothing)
        self.max_context = None
        self.table = table
        base = self.vocab_size + 1
        self._tables: list[_OrderTable] = []
        if self._kind == "wb":  # lower orders: marginals of the order-k table (suffix = key mod base^j)
            row_keys = np.repeat(table.keys, table.types)
            for j in range(self.order):
                suffix = row_keys % (base ** j)
                self._tables.append(_OrderTable.build(suffix, table.tok, table.cnt, self.vocab_size))
        self._tables.append(table)
        self._encoded: bytes | None = None

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def fit(cls, tokens, doc_offsets, vocab_size: int, eot: int, order: int,
            smoothing: str = DEFAULT_SMOOTHING) -> "MarkovModel":
        """Count the order-k contexts of every position of the stream (doc rule)."""
        check_shape(vocab_size, eot, order)
        parse_smoothing(smoothing)
        tokens = np.asarray(tokens)
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
            raise TokenboundError(f"tokens: ids must lie in [0, {vocab_size})")
        keys = context_keys(tokens, doc_offsets, order, vocab_size, eot)
        table = _OrderTable.build(keys, tokens.astype(np.int64), np.ones(tokens.size, dtype=np.int64), vocab_size)
        return cls(table, vocab_size, eot, order, smoothing)

    # -- probabilities -----------------------------------------------------------------------------------
    def _suffix(self, keys: np.ndarray, j: int) -> np.ndarray:
        return keys % ((self.vocab_size + 1) ** j)

    def prob_of(self, keys: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """p_θ(tok | context key), elementwise, without materialising distributions."""
        keys, tok = np.asarray(keys, np.int64), np.asarray(tok, np.int64)
        v = self.vocab_size
        if self._kind == "add":
            rows, found = self.table.find(keys)
            n = np.where(found, self.table.totals[rows] if rows.size and self.table.keys.size else 0, 0)
            c = np.where(found, self.table.count(rows, tok), 0)
            return (c + self._beta) / (n + self._beta * v)
        p = np.full(keys.shape, 1.0 / v)
        for j, tab in enumerate(self._tables):
            rows, found = tab.find(self._suffix(keys, j))
            if not found.any():
                continue
            r, t = rows[found], tok[found]
            n, types = tab.totals[r], tab.types[r]
            p[found] = (tab.count(r, t) + types * p[found]) / (n + types)
        return p

    def next_token_probs(self, keys: np.ndarray) -> np.ndarray:
        """[N, V] float64 distributions p_θ(· | context key) (rows sum to 1)."""
        keys = np.asarray(keys, np.int64)
        v = self.vocab_size
        p = np.full((keys.size, v), 1.0 / v)
        if self._kind == "add":
            rows, found = self.table.find(keys)
            counts = self.table.dense(rows[found])
            p[found] = (counts + self._beta) / (counts.sum(1, keepdims=True) + self._beta * v)
            return p
        for j, tab in enumerate(self._tables):
            rows, found = tab.find(self._suffix(keys, j))
            if not found.any():
                continue
            r = rows[found]
            types = tab.types[r][:, None].astype(np.float64)
            p[found] = (tab.dense(r) + types * p[found]) / (tab.totals[r][:, None] + types)
        return p

    def keys_for(self, tokens, doc_offsets, positions=None) -> np.ndarray:
        """Context keys of stream positions under the doc rule (see ``context_keys``)."""
        return context_keys(tokens, doc_offsets, self.order, self.vocab_size, self.eot, positions)

    def keys_from_rows(self, context_rows) -> np.ndarray:
        """Keys of explicit contexts: int array [N, k], oldest token first, left-padded with PAD = vocab_size."""
        rows = np.asarray(context_rows, dtype=np.int64).reshape(-1, self.order)
        if rows.size and (rows.min() < 0 or rows.max() > self.vocab_size):
            raise TokenboundError(f"context rows: ids must lie in [0, {self.vocab_size}] (PAD = {self.vocab_size})")
        weights = (self.vocab_size + 1) ** np.arange(self.order - 1, -1, -1, dtype=np.int64)
        return rows @ weights

    def true_token_probs(self, tokens, doc_offsets) -> np.ndarray:
        """p_θ(x_i | c_i) for every position of the stream under the doc rule (vectorised)."""
        return self.prob_of(self.keys_for(tokens, doc_offsets), np.asarray(tokens, np.int64))

    def score_positions(self, tokens, doc_offsets, positions=None, chunk_elems: int = 1 << 22):
        """(prob, rank, entropy_bits) of the true token at each position (all when None), as in TokenStats."""
        tokens = np.asarray(tokens)
        pos = np.arange(len(tokens)) if positions is None else np.asarray(positions, dtype=np.int64)
        uniq, inv = np.unique(self.keys_for(tokens, doc_offsets, pos), return_inverse=True)
        true = np.asarray(tokens[pos], dtype=np.int64)
        prob, rank, ent = np.empty(pos.size), np.empty(pos.size, np.int64), np.empty(pos.size)
        step = max(1, chunk_elems // self.vocab_size)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, uniq.size + step, step))
        for a in range(0, uniq.size, step):  # distributions of a block of distinct contexts at a time
            dist = self.next_token_probs(uniq[a:a + step])
            with np.errstate(divide="ignore", invalid="ignore"):
                ctx_ent = -np.where(dist > 0, dist * np.log2(dist), 0.0).sum(1)
            block = order[bounds[a // step]:bounds[a // step + 1]]
            for b in range(0, block.size, step):  # positions in pieces too: many may share one context
                sel = block[b:b + step]
                d = dist[inv[sel] - a]
                prob[sel] = d[np.arange(sel.size), true[sel]]
                rank[sel] = tie_broken_rank(d, true[sel])  # ties by id, docs/theory.md §8
                ent[sel] = ctx_ent[inv[sel] - a]
        return prob, rank, ent

    def log_probs(self, ids, segments=None):
        """LanguageModel interface: [B, T] ids -> [B, T, V] ln p; the context restarts at each segment start."""
        import torch

        ids_np = ids.detach().cpu().numpy().astype(np.int64)
        b, t = ids_np.shape
        seg = np.zeros_like(ids_np) if segments is None else segments.detach().cpu().numpy()
        col = np.arange(t)
        key = np.zeros((b, t), dtype=np.int64)
        weight = 1
        for back in range(self.order):  # digit back+1 of the context predicting after position col
            src = col - back
            valid = src >= 0
            srcc = np.maximum(src, 0)
            same = valid[None, :] & (seg[:, srcc] == seg)
            key += np.where(same, ids_np[:, srcc], self.vocab_size) * weight
            weight *= self.vocab_size + 1
        p = self.next_token_probs(key.reshape(-1)).reshape(b, t, self.vocab_size)
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(p))

    # -- code -----------------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """The model's bitstream (module docstring). Deterministic: equal tables give equal bytes."""
        if self._encoded is None:
            tab = self.table
            types = tab.types
            row_first = np.repeat(tab.ptr[:-1], types)
            prev_tok = np.where(np.arange(tab.tok.size) == row_first, -1, np.roll(tab.tok, 1))
            sm = self.smoothing.encode()
            body = (bytes([CODE_VERSION]) + varint_encode([self.vocab_size, self.eot, self.order, len(sm)]) + sm
                    + b"".join(encode_integers(a, checksum=False) for a in (
                        np.diff(tab.keys, prepend=-1) - 1, types - 1, tab.tok - prev_tok - 1, tab.cnt - 1)))
            self._encoded = body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
        return self._encoded

    @classmethod
    def decode(cls, data: bytes, where: str = "Markov bitstream") -> "MarkovModel":
        """Rebuild the model from ``encode``'s bytes; corruption raises TokenboundError."""
        data = bytes(data)
        if len(data) < 6 or zlib.crc32(data[:-4]) & 0xFFFFFFFF != int.from_bytes(data[-4:], "little"):
            raise TokenboundError(f"{where}: CRC32 mismatch or truncated (corrupted model)")
        if data[0] != CODE_VERSION:
            raise TokenboundError(f"{where}: unknown code version {data[0]}")
        (v, eot, order, nsm), off = varint_decode(data, 1, 4)
        check_shape(int(v), int(eot), int(order))
        smoothing = data[off:off + int(nsm)].decode("utf-8", errors="replace")
        off += int(nsm)
        streams = []
        for _ in range(4):
            arr, off = decode_integers_from(data, off)
            streams.append(arr)
        if off != len(data) - 4:
            raise TokenboundError(f"{where}: {len(data) - 4 - off} unexpected bytes after the count streams")
        gaps, types, tok_gaps, cnt = streams
        types = types + 1
        if types.sum() != tok_gaps.size or cnt.size != tok_gaps.size:
            raise TokenboundError(f"{where}: inconsistent stream lengths")
        keys = np.cumsum(gaps + 1) - 1
        ptr = np.append(0, np.cumsum(types)).astype(np.int64)
        steps = tok_gaps + 1
        csum = np.cumsum(steps)
        tok = csum - np.repeat(csum[ptr[:-1]] - steps[ptr[:-1]], types) - 1
        if tok.size and (tok.max() >= v or keys[-1] >= (int(v) + 1) ** int(order)):
            raise TokenboundError(f"{where}: token id or context key out of range")
        table = _OrderTable(keys, ptr, tok.astype(np.int64), cnt + 1, int(v))
        model = cls(table, int(v), int(eot), int(order), smoothing)
        model._encoded = data
        return model

    @property
    def payload_bits(self) -> int:
        return 8 * len(self.encode())

    @property
    def message_bits(self) -> int:
        """Kraft-valid code length: the bitstream's bits plus an Elias-gamma prefix of that length."""
        return sum(code_length_bits(len(self.encode())))

    @property
    def context_rule(self) -> str:
        return f"doc:{max(self.order, 1)}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "order": self.order, "eot": self.eot, "smoothing": self.smoothing,
                "context_rule": self.context_rule, "num_contexts": int(self.table.keys.size),
                "num_entries": int(self.table.tok.size), "num_tokens": int(self.table.cnt.sum()),
                "payload_bits": self.payload_bits, "message_bits": self.message_bits}

    # -- artifacts ----------------------------------------------------------------------------------------
    def save(self, out: str | Path, *, source_sha256: str | None = None, force: bool = False,
             source_path: str | Path | None = None) -> Path:
        """Write the bitstream and manifest.json (kind tokenbound.markov_model) atomically.

        `source_path` (the store it was fitted on) is recorded relative to `out` (``artifacts.path_record``).
        """
        source = None if source_path is None else {**path_record(source_path, out), "sha256": source_sha256}
        with atomic_output_dir(out, force=force) as tmp:
            write_bytes(tmp / BITSTREAM, self.encode())
            write_json(tmp / MANIFEST, make_manifest(
                KIND_MARKOV, **self.describe(), bitstream=BITSTREAM, bitstream_sha256=sha256_file(tmp / BITSTREAM),
                message_bits_breakdown={"payload_bits": self.payload_bits,
                                        "prefix_bits": self.message_bits - self.payload_bits},
                source_store_sha256=source_sha256, source_store=source))
        return Path(out)


def check_shape(vocab_size: int, eot: int, order: int) -> None:
    if vocab_size < 2:
        raise TokenboundError(f"vocab size must be >= 2, got {vocab_size}")
    if not 0 <= eot < vocab_size:
        raise TokenboundError(f"eot id {eot} is outside the vocabulary [0, {vocab_size})")
    if order < 0:
        raise TokenboundError(f"must be >= 0, got {order}", param="order")
    limit = max_order(vocab_size)
    if order > limit:
        raise TokenboundError(f"at most {limit} for vocabulary {vocab_size} (a context is one "
                              f"integer key below (V+1)^order, which must fit in 62 bits)", param="order", value=order)


def max_order(vocab_size: int) -> int:
    """The largest order k whose context keys fit: (V+1)^k < 2^62 (module docstring).

    Found by multiplying up (at most 62 steps, since V+1 >= 3) rather than by evaluating (V+1)^order, which for
    an absurd order (10^8) is an exact integer of hundreds of millions of bits that takes minutes to compute.
    For a BPE-8192 vocabulary the limit is 4, for bytes (V = 257) 7.
    """
    k, weight = 0, 1
    while weight * (vocab_size + 1) < _MAX_KEY:
        weight *= vocab_size + 1
        k += 1
    return k


def load_markov(path: Path, device: str = "cpu") -> MarkovModel:
    """Load a saved Markov model by decoding its bitstream (the name tokenbound.models.loading expects)."""
    path = Path(path)
    man = read_manifest(path, KIND_MARKOV)
    stream, data = _verified_bitstream(path, man)
    model = MarkovModel.decode(data, where=str(stream))
    if model.message_bits != man.get("message_bits"):
        raise TokenboundError(
            f"{path}: manifest message_bits {man.get('message_bits')} != decoded {model.message_bits}")
    return model


def _verified_bitstream(path: Path, man: dict[str, Any]) -> tuple[Path, bytes]:
    """(file, bytes) of a saved model's bitstream: inside its folder and with the manifest's sha256."""
    stream = file_inside(path, man.get("bitstream", BITSTREAM), f"{path / MANIFEST}: bitstream")
    if not stream.exists():
        raise TokenboundError(f"{path}: Markov model is missing {stream.name}")
    data = stream.read_bytes()
    if sha256_bytes(data) != man.get("bitstream_sha256"):
        raise TokenboundError(f"{stream}: sha256 does not match the manifest")
    return stream, data


def code_length_bits(num_bytes: int) -> tuple[int, int]:
    """(payload bits, Elias-gamma prefix bits) of a bitstream of `num_bytes` bytes (module docstring)."""
    payload = 8 * int(num_bytes)
    return payload, elias_gamma_bits(max(payload, 1))


def measured_message_bits(path: str | Path) -> tuple[int, dict[str, int]]:
    """(message bits, breakdown) of a saved Markov model, measured from its bitstream (docs/compression.md).

    The bitstream's exact bit length with its CRC32 and header (version, V, eot, order, smoothing) decoded, plus
    the recomputed Elias-gamma prefix of that length. The manifest's ``message_bits``, ``payload_bits`` and
    ``message_bits_breakdown`` must agree, else a one-line TokenboundError names the manifest and the bitstream.
    This, not the manifest's number, is what a certificate charges and what ``tokenbound verify`` re-checks.
    """
    path = Path(path)
    man = read_manifest(path, KIND_MARKOV)
    stream, data = _verified_bitstream(path, man)
    if len(data) < 6 or zlib.crc32(data[:-4]) & 0xFFFFFFFF != int.from_bytes(data[-4:], "little"):
        raise TokenboundError(f"{stream}: CRC32 mismatch or truncated (corrupted model)")
    if data[0] != CODE_VERSION:
        raise TokenboundError(f"{stream}: unknown code version {data[0]}")
    (v, eot, order, nsm), off = varint_decode(data, 1, 4)
    check_shape(int(v), int(eot), int(order))
    if off + int(nsm) > len(data) - 4:
        raise TokenboundError(f"{stream}: header runs past the end of the bitstream")
    payload, prefix = code_length_bits(len(data))
    breakdown = {"payload_bits": payload, "prefix_bits": prefix}
    recorded = man.get("message_bits_breakdown") or {}
    for key, got in (("message_bits", man.get("message_bits")), ("payload_bits", man.get("payload_bits")),
                     ("message_bits_breakdown.payload_bits", recorded.get("payload_bits")),
                     ("message_bits_breakdown.prefix_bits", recorded.get("prefix_bits"))):
        want = payload + prefix if key == "message_bits" else breakdown[key.rpartition(".")[2]]
        if got != want:
            raise TokenboundError(f"{path / MANIFEST}: {key} {got!r} disagrees with the {want} bits measured "
                                  f"from {stream.name}")
    return payload + prefix, breakdown


def fit_store(data: str | Path, order: int, out: str | Path, smoothing: str = DEFAULT_SMOOTHING,
              force: bool = False) -> dict[str, Any]:
    """`tokenbound markov`: fit on a TokenStore's whole stream, save, re-load from the bitstream, summarise."""
    from ..data.store import TokenStore

    store = TokenStore.open(data).check("data")
    check_shape(store.vocab_size, store.eot, order)
    model = MarkovModel.fit(np.asarray(store.tokens), store.doc_offsets, store.vocab_size, store.eot, order,
                            smoothing)
    model.save(out, source_sha256=store.sha256, force=force, source_path=store.path)
    decoded = load_markov(Path(out))
    if decoded.encode() != model.encode():  # what is scored must be exactly what is coded
        raise TokenboundError(f"{out}: decoded model differs from the fitted one")
    return {"out": str(out), **model.describe(), "source_store_sha256": store.sha256}
