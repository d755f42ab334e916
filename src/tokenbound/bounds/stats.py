"""TokenStats: the per-sampled-position statistics that all bound arithmetic runs on (docs/design.md §4).

The expensive step (scoring a model) produces these small arrays; certificates are computed from
them alone, so `verify` can recompute every number in milliseconds.

Arrays (one entry per scored position, all of length N):
- ``positions``    int64   index i of the scored token x_i in the stream
- ``prob``         float64 p_θ(x_i | c_i), the *unsmoothed* model probability of the true token
- ``rank``         int64   1 + #{v : p_θ(v | c_i) > p_θ(x_i | c_i)} + #{v < x_i : p_θ(v | c_i) = p_θ(x_i | c_i)}:
                           the true token's place in (probability desc, id asc) order; top-k correct iff
                           rank <= k, i.e. x_i is in the k-token prediction set (docs/theory.md §8; recorded
                           as ``meta["rank_rule"]`` by the scorer)
- ``entropy_bits`` float64 the model's predictive entropy −Σ_v p_θ(v|c_i) log2 p_θ(v|c_i) (a predictable
                           quantity: a function of the context and the model only)
- ``draw``         int64   which independent draw of the sampler produced the position: 0..n−1. Under
                           the token sampler every position is its own draw; under the block sampler all
                           scored positions of one sampled window share a draw. Draws are i.i.d. given the data.
Optional: ``control_bits`` float64, a control variate's value at each scored position (a quantity known at
every position of the stream, e.g. a bigram model's loss), with ``meta["control_variate"]`` = {"spec",
"population_mean_bits" (its exact mean over the m positions), "draw_min_bits", "draw_max_bits" (the range of
its mean over one draw's scored positions, over every possible draw)}; see evaluate/control.py.
Metadata (``meta``, a JSON-serialisable dict) must hold: ``sampler`` ("token" | "block" | "document"),
``context_rule`` (e.g. "doc:1024"), ``seed``, ``population_tokens`` (m, the number of positions the
sample represents), ``vocab_size``; and may hold ``population_windows``, ``population_documents`` (document
sampler), ``model_sha256``,
``store_sha256``, ``num_draws`` and anything else useful for provenance.
Stored as .npz without pickle (meta as a JSON string).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TokenboundError

REQUIRED_META = ("sampler", "context_rule", "seed", "population_tokens", "vocab_size")
CONTROL_META = ("spec", "population_mean_bits", "draw_min_bits", "draw_max_bits")


@dataclass
class TokenStats:
    positions: np.ndarray
    prob: np.ndarray
    rank: np.ndarray
    entropy_bits: np.ndarray
    draw: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    control_bits: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.control_bits is not None:
            self.control_bits = np.asarray(self.control_bits, dtype=np.float64)
        self.positions = np.asarray(self.positions, dtype=np.int64)
        self.prob = np.asarray(self.prob, dtype=np.float64)
        self.rank = np.asarray(self.rank, dtype=np.int64)
        self.entropy_bits = np.asarray(self.entropy_bits, dtype=np.float64)
        self.draw = np.asarray(self.draw, dtype=np.int64)

    @property
    def num_draws(self) -> int:
        return int(self.draw.max()) + 1 if self.draw.size else 0

    def __len__(self) -> int:
        return int(self.prob.shape[0])

    def validate(self, where: str = "TokenStats") -> "TokenStats":
        """Raise a one-line TokenboundError if anything is malformed (never silently certify bad input)."""
        n = len(self)
        if n == 0:
            raise TokenboundError(f"{where}: no scored positions (sample size 0)")
        for name in ("positions", "rank", "entropy_bits", "draw"):
            if getattr(self, name).shape != (n,):
                raise TokenboundError(f"{where}: array {name!r} has shape {getattr(self, name).shape}, expected ({n},)")
        bad = ~np.isfinite(self.prob) | (self.prob < 0) | (self.prob > 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise TokenboundError(
                f"{where}: probability at stream position {int(self.positions[i])} is {self.prob[i]!r} (must be in [0, 1])")
        if not np.isfinite(self.entropy_bits).all():
            i = int(np.argmax(~np.isfinite(self.entropy_bits)))
            raise TokenboundError(f"{where}: entropy at stream position {int(self.positions[i])} is not finite")
        if (self.rank < 1).any():
            raise TokenboundError(f"{where}: ranks must be >= 1")
        missing = [k for k in REQUIRED_META if k not in self.meta]
        if missing:
            raise TokenboundError(f"{where}: metadata lacks {', '.join(missing)}")
        if int(self.meta["population_tokens"]) < 1:
            raise TokenboundError(f"{where}: population_tokens must be >= 1, got {self.meta['population_tokens']}")
        if int(self.meta["vocab_size"]) < 2:
            raise TokenboundError(f"{where}: vocab_size must be >= 2, got {self.meta['vocab_size']}")
        if self.draw.min() < 0 or np.unique(self.draw).size != self.num_draws:
            raise TokenboundError(f"{where}: draw ids must be 0..n-1 with every draw present")
        if self.control_bits is not None:
            if self.control_bits.shape != (n,) or not np.isfinite(self.control_bits).all():
                raise TokenboundError(f"{where}: control_bits must be {n} finite values")
            summary = self.meta.get("control_variate")
            if not isinstance(summary, dict) or any(k not in summary for k in CONTROL_META):
                raise TokenboundError(f"{where}: control_bits needs meta['control_variate'] with {', '.join(CONTROL_META)}")
            if not summary["draw_min_bits"] <= summary["population_mean_bits"] <= summary["draw_max_bits"]:
                raise TokenboundError(f"{where}: control variate mean lies outside its draw range")
        return self

    def draws_between(self, lo: int, hi: int) -> "TokenStats":
        """The draws lo..hi−1, renumbered from 0 (a contiguous run of i.i.d. draws is itself i.i.d.)."""
        keep = (self.draw >= lo) & (self.draw < hi)
        return TokenStats(self.positions[keep], self.prob[keep], self.rank[keep], self.entropy_bits[keep],
                          self.draw[keep] - lo, meta=self.meta,
                          control_bits=None if self.control_bits is None else self.control_bits[keep])

    def control_variate(self):
        """The ControlVariate of the draws (draw means of control_bits and the population summary), or None."""
        if self.control_bits is None:
            return None
        from .subsampling import ControlVariate, draw_means

        c = self.meta["control_variate"]
        return ControlVariate(draw_means(self.control_bits, self.draw, self.num_draws),
                              float(c["population_mean_bits"]), float(c["draw_min_bits"]),
                              float(c["draw_max_bits"]))

    def save(self, path: str | Path) -> None:
        """Write atomically as .npz (no pickle)."""
        from ..artifacts import write_bytes
        import io

        buf = io.BytesIO()
        extra = {} if self.control_bits is None else {"control_bits": self.control_bits}
        np.savez(buf, positions=self.positions, prob=self.prob, rank=self.rank,
                 entropy_bits=self.entropy_bits, draw=self.draw,
                 meta=np.array(json.dumps(self.meta, sort_keys=True)), **extra)
        write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "TokenStats":
        path = Path(path)
        if not path.exists():
            raise TokenboundError(f"{path}: TokenStats file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("positions", "prob", "rank", "entropy_bits", "draw")}
                meta = json.loads(str(z["meta"]))
                control = z["control_bits"] if "control_bits" in z.files else None
        except (KeyError, ValueError, OSError) as e:
            raise TokenboundError(f"{path}: not a valid TokenStats file ({e})") from None
        return cls(**arrays, meta=meta, control_bits=control)
