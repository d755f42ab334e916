"""The document-level baseline (Lotfi et al. 2023, arXiv 2312.17173 / ICML 2024; docs/theory.md §9).

Documents are IID draws from a distribution of documents; a document's loss is the mean smoothed loss of its
tokens, in [L_min, L_max]. Hoeffding plus a union bound over the prior (Theorem A with D documents in place of
m tokens) gives, with probability >= 1 − δ1 − δ2,

    E[document loss] <= R̂_n + Δ·sqrt((L ln 2 + ln(1/δ1))/(2D)) + Δ·sqrt(ln(1/δ2)/(2n)),

where R̂_n is the mean over the n sampled documents (one draw each in `document_stats`) of their mean loss.
"""
from __future__ import annotations

import numpy as np

from ..errors import TokenboundError
from .methods import azuma_method
from .schema import DocumentLevelBound
from .smoothing import smoothed_loss_bits
from .stats import TokenStats


def resolve_num_documents(document_stats: TokenStats, num_documents: int | None) -> int:
    """D: `num_documents` if given, else document_stats.meta["population_documents"]; must be >= 1 and agree."""
    recorded = document_stats.meta.get("population_documents")
    if num_documents is not None and recorded is not None and int(recorded) != num_documents:
        raise TokenboundError(f"{num_documents!r} differs from the {recorded} documents the document sample was "
                              f"drawn from", param="num_documents")
    d = num_documents if num_documents is not None else recorded
    if d is None or int(d) < 1 or int(d) != d:
        raise TokenboundError(f"the document-level baseline needs the number of documents (an integer >= 1), "
                              f"got {d!r}", param="num_documents")
    return int(d)


def document_level_bound(document_stats: TokenStats, num_documents: int, alpha_grid: np.ndarray, vocab_size: int,
                         prior_items: dict[str, float], delta: float, split) -> DocumentLevelBound:
    """The baseline's bound, minimised over the α grid (paid for in `prior_items` and by dividing the
    subsampling δ by |α grid|)."""
    losses = smoothed_loss_bits(document_stats.prob, alpha_grid, vocab_size)
    entry, _ = azuma_method(losses, draw=document_stats.draw, num_draws=document_stats.num_draws,
                            alpha_grid=alpha_grid, vocab_size=vocab_size, prior_items=prior_items, delta=delta,
                            split=split, num_units=float(num_documents), subsample_choices=len(alpha_grid))
    return entry.specialised(DocumentLevelBound)
