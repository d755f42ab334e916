"""k-th order Markov-chain (n-gram) language model: doc-rule contexts, counts, fixed smoothing, probabilities.

The contexts and the count table n(c, v) of order-k context/next-token counts of the training stream are
models/markov_table.py's (context keys, PAD = V). Lower orders are marginals of the table (every position
contributes one event at every order). Smoothing is fixed in advance and recorded (it is part of the hypothesis,
not chosen on data):
- ``wb`` (default): interpolated Witten–Bell down to the uniform distribution,
  p_j(v|c) = (n_j(c,v) + T_j(c)·p_{j−1}(v|c')) / (n_j(c) + T_j(c)), T_j(c) = #{v : n_j(c,v) > 0},
  p_{−1} = 1/V, and p_j = p_{j−1} for an unseen order-j context.
- ``add:β``: additive, p(v|c) = (n_k(c,v) + β) / (n_k(c) + β·V) (uniform for an unseen context).

The model's message is the bitstream of its table (``encode``/``decode``, models/markov_code.py); fitting on a
TokenStore and the model directory are models/markov_fit.py's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..bounds.topk import tie_broken_rank
from ..errors import TokenboundError
from .base import LanguageModel
from .markov_code import MarkovHeader, code_length_bits, decode_table, encode_table
from .markov_table import OrderTable, check_shape, context_keys

DEFAULT_SMOOTHING = "wb"


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


class MarkovModel(LanguageModel):
    """A fitted k-th order chain; build with ``fit`` or ``decode``; see the module docstring."""

    def __init__(self, table: OrderTable, vocab_size: int, eot: int, order: int, smoothing: str):
        self.vocab_size, self.eot, self.order = int(vocab_size), int(eot), int(order)
        self.smoothing = smoothing
        self._kind, self._beta = parse_smoothing(smoothing)
        self.max_context = None
        self.table = table
        base = self.vocab_size + 1
        self._tables: list[OrderTable] = []
        if self._kind == "wb":  # lower orders: marginals of the order-k table (suffix = key mod base^j)
            row_keys = np.repeat(table.keys, table.types)
            for j in range(self.order):
                suffix = row_keys % (base ** j)
                self._tables.append(OrderTable.build(suffix, table.tok, table.cnt, self.vocab_size))
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
        table = OrderTable.build(keys, tokens.astype(np.int64), np.ones(tokens.size, dtype=np.int64), vocab_size)
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
        """Context keys of stream positions under the doc rule (``markov_table.context_keys``)."""
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
        """The model's bitstream (models/markov_code.py). Deterministic: equal tables give equal bytes."""
        if self._encoded is None:
            header = MarkovHeader(self.vocab_size, self.eot, self.order, self.smoothing)
            self._encoded = encode_table(header, self.table)
        return self._encoded

    @classmethod
    def decode(cls, data: bytes, where: str = "Markov bitstream") -> "MarkovModel":
        """Rebuild the model from ``encode``'s bytes; corruption raises TokenboundError."""
        data = bytes(data)
        header, table = decode_table(data, where)
        model = cls(table, header.vocab_size, header.eot, header.order, header.smoothing)
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
