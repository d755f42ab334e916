"""Forward passes over model input rows and the per-position statistics (float64) they yield.

A row reads ext[in_start:in_end] and scores the targets [score_from, score_to) (see data.sampling.Rows).
Rows of different lengths share a forward pass by right-padding: the LanguageModel contract is causal (position t
depends on ids[:t+1] only), so padding after a row's last real token cannot change any scored number. Padding
repeats the row's last token and extends its last segment, so a one-segment row stays one segment (models that
cannot handle segments keep working under the token sampler).

Results come back in row order (positions in increasing order inside a row), whatever the batching, so a shard's
content depends only on its rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.context import extended_slice
from ..data.sampling import Rows
from ..errors import TokenboundError
from ..models.base import LanguageModel, segments_from_ids

LN2 = math.log(2.0)
# Positions whose float64 statistics are computed at once: bounds memory at STATS_CHUNK × V × 8 bytes × ~3.
STATS_CHUNK = 256


@dataclass
class Scored:
    """Per scored position: stream position, p(true token), rank, entropy in bits, draw id."""

    positions: np.ndarray
    prob: np.ndarray
    rank: np.ndarray
    entropy_bits: np.ndarray
    draw: np.ndarray

    @classmethod
    def concat(cls, parts: list["Scored"]) -> "Scored":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.fields()))

    @classmethod
    def empty(cls) -> "Scored":
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))

    @staticmethod
    def fields() -> tuple[str, ...]:
        return ("positions", "prob", "rank", "entropy_bits", "draw")


def position_stats(log_probs: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor,
                   positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prob, rank, entropy_bits) of the true tokens at (rows[k], cols[k]) of natural-log scores [b, T, V].

    The scores are upcast to float64 and re-normalised (softmax) first, so tiny normalisation errors of the model
    do not leak into the bound. rank = 1 + #{v : p(v) > p(true)} + #{v < true : p(v) = p(true)}: the position of
    the true token when the vocabulary is ordered by probability descending, then id ascending (bounds.topk.RANK_RULE,
    docs/theory.md §8), so top-k correct means "in the k-token prediction set", ties never counting in the
    model's favour. Every comparison reads the same float64 tensor, so exactly tied logits stay exactly tied.
    A row with NaN or +inf, or with no finite entry, is an error naming its stream position; −inf entries are
    probability 0 (smoothing handles them).
    Gathers STATS_CHUNK positions at a time so the float64 copies stay small for large vocabularies.
    """
    probs, ranks, ents = [], [], []
    for a in range(0, rows.shape[0], STATS_CHUNK):
        x = log_probs[rows[a:a + STATS_CHUNK], cols[a:a + STATS_CHUNK]].to(torch.float64)
        lse = torch.logsumexp(x, dim=1, keepdim=True)
        bad = torch.isnan(x).any(1) | torch.isposinf(x).any(1) | ~torch.isfinite(lse[:, 0])
        if bool(bad.any()):
            k = a + int(torch.nonzero(bad)[0, 0])
            raise TokenboundError(f"model returned non-finite log-probabilities when predicting stream position "
                                  f"{int(positions[k])}")
        logp = x - lse
        p = logp.exp()
        true = targets[a:a + STATS_CHUNK, None]
        p_true = p.gather(1, true)
        ids = torch.arange(p.shape[1], device=p.device)[None, :]
        rank = 1 + (p > p_true).sum(1) + ((p == p_true) & (ids < true)).sum(1)
        ent_nats = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(1)
        probs.append(p_true[:, 0].cpu().numpy())
        ranks.append(rank.cpu().numpy())
        ents.append((ent_nats / LN2).cpu().numpy())
    return np.concatenate(probs), np.concatenate(ranks).astype(np.int64), np.concatenate(ents)


def build_batch(tokens: Any, eot: int, rows: Rows, idx: np.ndarray, use_segments: bool
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Right-padded ids [b, T] (and segments) for rows `idx`; returns also each row's real length."""
    lengths = (rows.in_end[idx] - rows.in_start[idx]).astype(np.int64)
    T = int(lengths.max())
    ids = np.empty((len(idx), T), dtype=np.int64)
    segs = np.empty((len(idx), T), dtype=np.int64) if use_segments else None
    for r, k in enumerate(idx):
        row = extended_slice(tokens, eot, int(rows.in_start[k]), int(rows.in_end[k]))
        n = row.shape[0]
        ids[r, :n], ids[r, n:] = row, row[-1]
        if segs is not None:
            seg = segments_from_ids(row, eot)
            segs[r, :n], segs[r, n:] = seg, seg[-1]
    return ids, segs, lengths


def _long(a: Any, device: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)


def score_rows(model: LanguageModel, tokens: Any, eot: int, rows: Rows, *, use_segments: bool,
               batch_size: int, device: str = "cpu", bar: Any = None) -> Scored:
    """Score every target of every row; one forward pass per batch of up to `batch_size` rows."""
    if len(rows) == 0:
        return Scored.empty()
    counts = rows.score_to - rows.score_from
    out_offset = np.concatenate([[0], np.cumsum(counts)])
    total = int(out_offset[-1])
    prob, ent = np.empty(total), np.empty(total)
    rank, pos, draw = np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, np.int64)
    # Similar lengths together keep padding small; stable sort keeps the batching a function of the rows alone.
    order = np.argsort(rows.in_end - rows.in_start, kind="stable")
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        ids, segs, _ = build_batch(tokens, eot, rows, idx, use_segments)
        # which (row in batch, column) predicts which target, and where its result goes
        b_idx = np.repeat(np.arange(len(idx)), counts[idx])
        targets = np.concatenate([np.arange(rows.score_from[k], rows.score_to[k]) for k in idx])
        cols = targets - 1 - np.repeat(rows.in_start[idx], counts[idx])
        dest = np.concatenate([np.arange(out_offset[k], out_offset[k + 1]) for k in idx])
        ids_t = torch.from_numpy(ids).to(device)
        segs_t = torch.from_numpy(segs).to(device) if segs is not None else None
        with torch.no_grad():
            lp = model.log_probs(ids_t, segs_t)
            if tuple(lp.shape) != (ids.shape[0], ids.shape[1], model.vocab_size):
                raise TokenboundError(f"model returned log-probabilities of shape {tuple(lp.shape)}, expected "
                                      f"{(ids.shape[0], ids.shape[1], model.vocab_size)}")
            p, r, e = position_stats(lp, _long(b_idx, lp.device), _long(cols, lp.device),
                                     _long(tokens[targets], lp.device), targets)
        prob[dest], rank[dest], ent[dest] = p, r, e
        pos[dest], draw[dest] = targets, np.repeat(rows.draw[idx], counts[idx])
        if bar is not None:
            bar.update(len(targets))
    return Scored(pos, prob, rank, ent, draw)
