"""Context rules (docs/design.md §3): what the model sees before predicting each stream position.

Pure index arithmetic on numpy arrays; no model, no torch.

Coordinates. The *extended stream* is ext[−1] = eot (virtual), ext[i] = x_i for i in [0, m). Every position
i in [0, m) is a target. A context is a half-open span [start, end) of extended indices with end == i: the
model reads ext[start:end] and predicts x_i from its last token. So ``end − start`` (>= 1) tokens are seen.

Rules (B = block, s = stride):
- ``doc:B``     start = max(i − B, j) where j is the last eot strictly before i (j = −1 for the virtual one).
- ``stream:B``  start = max(i − B, −1).
- ``doc:B/s``, ``stream:B/s`` (strided): window w holds the model input ext[a_w : a_w + B] with
  a_w = −1 + w·s; its targets are a_w + 1 … a_w + B (those < m). Position i is scored in the first window
  in which it is among the last s targets, i.e. w(i) = max(0, ⌊(i − B)/s⌋ + 1), so the first window scores
  all its targets. Its context starts at a_{w(i)} (``stream``) or max(a_{w(i)}, j) (``doc``).
  s = 1 gives the full rule, s = B non-overlapping blocks; every scored position sees at least B − s + 1
  tokens or its whole stream (document) prefix. ``doc:B/1`` is the same rule as ``doc:B`` and is written so.

Document boundaries are given as ``doc_offsets``: the sorted starts of eot-delimited documents (doc_offsets[0]
== 0; the token before each start is an eot). For a TokenStore that is ``store.doc_offsets`` (every document ends
with its eot); ``eot_doc_offsets(tokens, eot)`` derives it from the tokens themselves.

Windows can be laid over a sub-span [lo, hi) of the stream instead of [0, m) (the document sampler scores each
document alone): the same formulas with indices shifted by lo, the virtual eot being ext[lo − 1].
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TokenboundError

FLAVOURS = ("doc", "stream")
_SPEC = re.compile(r"^(doc|stream):(\d+)(?:/(\d+))?$")


@dataclass(frozen=True)
class Windows:
    """Strided windows over a span, one entry per window (all int64 arrays of equal length).

    Window k reads the model input ext[start[k]:end[k]] (1 <= end − start <= B) and scores the targets
    [first_scored[k], end_scored[k]) (end_scored == end + 1: the last input token predicts the last target).
    """

    start: np.ndarray
    end: np.ndarray
    first_scored: np.ndarray
    end_scored: np.ndarray

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def num_scored(self) -> np.ndarray:
        return self.end_scored - self.first_scored

    def as_tuples(self) -> list[tuple[int, int, int, int]]:
        return [tuple(int(v) for v in t) for t in zip(self.start, self.end, self.first_scored, self.end_scored)]


@dataclass(frozen=True)
class ContextRule:
    """A context rule; build it with ``ContextRule.parse("doc:1024/512")``; ``str(rule)`` is canonical."""

    flavour: str
    block: int
    stride: int | None = None  # None: the full rule (equivalent to stride 1)

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise TokenboundError(f"flavour must be 'doc' or 'stream', got {self.flavour!r}", param="context")
        if self.block < 1:
            raise TokenboundError(f"block size must be >= 1, got {self.block}", param="context")
        if self.stride is not None and not 1 <= self.stride <= self.block:
            raise TokenboundError(f"stride must be in [1, {self.block}], got {self.stride}", param="context")
        if self.stride == 1:  # same rule as the full one: one canonical form
            object.__setattr__(self, "stride", None)

    @classmethod
    def parse(cls, spec: "str | ContextRule") -> "ContextRule":
        if isinstance(spec, ContextRule):
            return spec
        m = _SPEC.match(str(spec).strip())
        if not m:
            raise TokenboundError(f"expected doc:B, stream:B, doc:B/s or stream:B/s, got {spec!r}", param="context")
        flavour, block, stride = m.group(1), int(m.group(2)), m.group(3)
        return cls(flavour, block, None if stride is None else int(stride))

    def __str__(self) -> str:
        return f"{self.flavour}:{self.block}" + (f"/{self.stride}" if self.stride else "")

    @property
    def is_doc(self) -> bool:
        return self.flavour == "doc"

    @property
    def is_strided(self) -> bool:
        return self.stride is not None

    @property
    def step(self) -> int:
        """The stride s of the windows (1 for a full rule)."""
        return self.stride or 1

    def describe(self) -> dict[str, Any]:
        return {"rule": str(self), "flavour": self.flavour, "block": self.block, "stride": self.step}

    # -- contexts ----------------------------------------------------------------------------------------
    def contexts(self, positions: Any, doc_offsets: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised contexts: (start, end) int64 arrays of extended indices for every target position."""
        i = np.asarray(positions, dtype=np.int64)
        if self.is_strided:
            start = self.window_start(self.window_of(i))
        else:
            start = np.maximum(i - self.block, -1)
        if self.is_doc:
            start = np.maximum(start, last_eot_before(i, doc_offsets))
        return start, i.copy()

    def context(self, i: int, tokens: Any, doc_offsets: Any) -> tuple[int, int]:
        """The context span (start, end == i) of one position i in [0, len(tokens))."""
        m = len(tokens)
        if not 0 <= i < m:
            raise IndexError(f"position {i} outside the stream [0, {m})")
        s, e = self.contexts(np.array([i]), doc_offsets)
        return int(s[0]), int(e[0])

    # -- strided windows ------------------------------------------------------------------------------------
    def window_of(self, positions: Any, lo: int = 0) -> np.ndarray:
        """Index of the window that scores each position (windows laid over a span starting at `lo`)."""
        i = np.asarray(positions, dtype=np.int64) - lo
        return np.maximum(0, (i - self.block) // self.step + 1)

    def window_start(self, w: Any, lo: int = 0) -> np.ndarray:
        """Extended index of the first input token of window w: lo − 1 + w·s."""
        return lo - 1 + np.asarray(w, dtype=np.int64) * self.step

    def num_windows(self, lo: int, hi: int) -> int:
        """Number of windows needed to score every position of [lo, hi) (0 for an empty span)."""
        return 0 if hi <= lo else int(self.window_of(np.int64(hi - 1), lo)) + 1

    def window_bounds(self, w: Any, lo: int, hi: int) -> Windows:
        """The windows with indices `w` over the span [lo, hi) (the last one may be short)."""
        w = np.asarray(w, dtype=np.int64)
        start = self.window_start(w, lo)
        end = np.minimum(start + self.block, hi - 1)
        first = np.where(w == 0, lo, start + 1 + self.block - self.step)
        return Windows(start, end, first, end + 1)

    def windows(self, m: int, lo: int = 0) -> Windows:
        """All windows over [lo, m) (by default the whole stream). Materialises one entry per window."""
        return self.window_bounds(np.arange(self.num_windows(lo, m)), lo, m)


def last_eot_before(positions: Any, doc_offsets: Any) -> np.ndarray:
    """Extended index of the last eot strictly before each position: (start of its document) − 1."""
    offsets = np.asarray(doc_offsets, dtype=np.int64)
    if offsets.size == 0 or offsets[0] != 0:
        raise TokenboundError("doc_offsets: must start with 0 (a virtual eot precedes the stream)")
    d = np.searchsorted(offsets, np.asarray(positions, dtype=np.int64), side="right") - 1
    return offsets[d] - 1


def eot_doc_offsets(tokens: Any, eot: int, chunk: int = 1 << 24) -> np.ndarray:
    """Starts of the eot-delimited documents of a stream: 0 and every position right after an eot.

    Equals a TokenStore's doc_offsets when its invariant holds (eot only at document ends); scanning in
    chunks keeps memory small for memmapped streams. A trailing eot starts no document.
    """
    m = len(tokens)
    found = [np.zeros(1, dtype=np.int64)]
    for a in range(0, m, chunk):
        hits = np.flatnonzero(np.asarray(tokens[a:a + chunk]) == eot).astype(np.int64) + a + 1
        found.append(hits[hits < m])
    return np.concatenate(found)


def extended_slice(tokens: Any, eot: int, start: int, end: int) -> np.ndarray:
    """ext[start:end] as int64 (start may be −1, the virtual eot)."""
    if start < -1 or end < start:
        raise IndexError(f"bad extended span [{start}, {end})")
    body = np.asarray(tokens[max(start, 0):end], dtype=np.int64)
    return np.concatenate([np.array([eot], dtype=np.int64), body]) if start == -1 else body
