"""The one interface every model implements (docs/design.md §6): next-token log-probabilities."""
from __future__ import annotations

import abc
from typing import Any


class LanguageModel(abc.ABC):
    """A next-token predictor over token ids in [0, vocab_size).

    Invariants every implementation keeps:
    - ``log_probs(ids)`` returns natural-log probabilities, unsmoothed, float32 or float64,
      shape [B, T, V]; row b, position t is the distribution of the token *after* ids[b, t]
      given ids[b, :t+1] only (causal), so ``log_probs(ids)[b, t, ids[b, t+1]]`` scores ids[b, t+1].
    - With ``segments`` (LongTensor [B, T], non-decreasing along T), position t attends only to
      earlier positions with the same segment id, and its position index restarts at the first
      token of its segment: scoring a packed row equals scoring each segment alone.
      Models that cannot do this raise ``TokenboundError`` when segments contain more than one id.
    - ``max_context``: the most tokens one row may hold (None = unlimited).
    - Deterministic: the same ids give the same numbers (eval mode, no dropout).
    """

    vocab_size: int
    max_context: int | None

    @abc.abstractmethod
    def log_probs(self, ids: Any, segments: Any | None = None) -> Any:
        """LongTensor [B, T] (and optional segments [B, T]) -> float tensor [B, T, V] of ln p."""

    def describe(self) -> dict[str, Any]:
        """Provenance for certificates: architecture, parameter counts, anything a reader needs."""
        return {"class": type(self).__name__, "vocab_size": self.vocab_size, "max_context": self.max_context}

    def to(self, device: str) -> "LanguageModel":
        return self


def segments_from_ids(ids: Any, eot: int) -> Any:
    """Segment ids for the `doc` context rule (docs/design.md §3): a new segment starts at every eot *input* token.

    An eot that ends document j is, as an input, the first context token of document j+1, so position t
    predicting x_{t+1} attends exactly to the tokens of its document since (and including) the last eot.
    Works on torch tensors and numpy arrays of shape [..., T].
    """
    return (ids == eot).cumsum(-1)
