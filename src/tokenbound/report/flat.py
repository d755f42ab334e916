"""One flat view of a certificate: the numbers every table and summary shows, and how a table prints them.

``certificate_numbers`` is the only place that reads a Certificate's attributes for display (the report table,
`bound`'s summary, the studies' tables); ``fmt`` / ``markdown_table`` the only number format and table.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..bounds.schema import Certificate


def certificate_numbers(cert: Certificate) -> dict[str, Any]:
    """{name: value} of one certificate: bits per token unless named otherwise (top-k: error rates)."""
    desc = cert.model.get("describe") or {}
    independence = cert.data.get("heldout_independence") or {}
    compressors = cert.extra.get("reference_compressors") or {}
    bounds, top = cert.bounds, cert.top_k_error_bounds
    assumed = cert.heldout and independence.get("established") == "assumed"
    return {
        "kind": ("train" if not cert.heldout else "test-set, assuming the model never saw the data" if assumed
                 else "test-set"),
        "heldout": cert.heldout, "assumed_unseen": assumed,
        "parameterization": desc.get("parameterization") or desc.get("layers") or desc.get("class", ""),
        "trainable_params": desc.get("coded_params") or desc.get("num_coded_params") or desc.get("num_params"),
        "message_bits": cert.inputs.message_bits,
        "empirical": cert.terms.empirical_bits, "complexity": cert.terms.complexity_bits,
        "subsample": cert.terms.subsample_bits,
        "bound": cert.bound_bits_per_token, "bound_method": cert.method, "alpha": cert.alpha,
        **{name: bounds[name].bound_bits_per_token if name in bounds else None
           for name in ("azuma", "variance_adaptive", "document_level")},
        "top1": top.get(1), "top10": top.get(10), "top100": top.get(100),
        "random_guess": cert.random_guess_bits, "vacuous": cert.vacuous,
        "break_even_tokens": cert.break_even_tokens.get(cert.method),
        "context": cert.sample.context_rule, "sampler": cert.sample.sampler, "num_tokens": cert.sample.num_tokens,
        "sample_size": cert.sample.sample_size, "delta": cert.inputs.delta,
        # the guaranteed rate beside what real compressors actually achieve on the same text (evaluate/compressors.py)
        "bits_per_byte": cert.bits_per_byte,
        "gzip_bits_per_byte": compressors.get("gzip_bits_per_byte"),
        "xz_bits_per_byte": compressors.get("xz_bits_per_byte"),
    }


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: '–' for none, yes/no, integers with thousands separators, floats to `digits` decimals
    (whole numbers from 10,000 on)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if hasattr(v, "item") and not isinstance(v, (int, float)):  # a numpy scalar
        v = v.item()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


def fmt_count(v: Any) -> str:
    """Bits and parameter counts: an integer with thousands separators, decimals only when fractional."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, float):
        return f"{v:,.3f}"
    return fmt(v)


def fmt_error_rate(v: Any) -> str:
    """A top-k error bound: min(bound, 1), which is still valid; above 1 it says nothing and is flagged."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1:
        return "1 (vacuous)"
    return fmt(v)


FORMATS = {"message_bits": fmt_count, "trainable_params": fmt_count, "top1": fmt_error_rate,
           "top10": fmt_error_rate, "top100": fmt_error_rate}


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table with one line per row; `columns` are (key, title) pairs, each cell printed by
    FORMATS[key] (default `fmt`)."""
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(FORMATS.get(key, fmt)(r.get(key)).replace("|", "\\|") for key, _ in columns)
            + " |" for r in rows]
    return "\n".join([head, sep, *body])
