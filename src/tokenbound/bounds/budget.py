"""The two budgets every bound spends: prior bits (Occam / Kraft) and confidence δ (union bound).

Prior bits. A hypothesis described by a prefix-free code of L bits gets prior 2^−L (Kraft). A length
that is not prefix-free is made so by an Elias-gamma code of the length (prefix.elias_gamma_bits).
Every choice made after looking at the data among K alternatives fixed in advance costs log2 K bits
(prefix.choice_bits): the prior is split uniformly over the alternatives. The certificate itemises them.

Confidence. A bound that adds several high-probability statements (the martingale bound and a
subsampling confidence bound) holds with probability >= 1 − Σ δ_k by a union bound, provided the
split δ = Σ δ_k is fixed before the data are seen. Splits:
- "paper":  δ_main = δ·n/(n + m), the rest (δ·m/(n + m)) for subsampling (YilunKuang/token-bounds-for-llms).
- "equal":  δ/2 for the main bound, δ/2 for subsampling.
- a dict of fractions of δ: {"main": f1, "subsample": f2}, both > 0 and summing to <= 1.
"""
from __future__ import annotations

import math
from typing import Mapping

from ..errors import TokenboundError
from .prefix import elias_gamma_bits

DELTA_SPLITS = ("paper", "equal")
RESERVED_PRIOR_ITEMS = ("message", "message_prefix", "alpha_grid", "method_choice", "lambda_grid")


def check_delta(delta: float, param: str = "delta") -> float:
    d = float(delta)
    if not (0.0 < d < 1.0):
        raise TokenboundError(f"δ must be in (0, 1), got {delta!r}", param=param)
    return d


def check_delta_split(split: str | Mapping[str, float], param: str = "delta_split") -> str | dict[str, float]:
    """Validate a split spec; returns it in a JSON-serialisable form (str or dict of floats)."""
    if isinstance(split, str):
        if split not in DELTA_SPLITS:
            raise TokenboundError(f"unknown split {split!r}; expected one of {DELTA_SPLITS} or a dict", param=param)
        return split
    if not isinstance(split, Mapping):
        raise TokenboundError(f"expected a name or a dict of fractions, got {type(split).__name__}", param=param)
    if set(split) != {"main", "subsample"}:
        raise TokenboundError(f"dict needs exactly the keys 'main' and 'subsample', got {sorted(split)}", param=param)
    out = {k: float(v) for k, v in split.items()}
    if any(not (v > 0) or not math.isfinite(v) for v in out.values()):
        raise TokenboundError(f"every fraction must be > 0, got {out}", param=param)
    if sum(out.values()) > 1.0 + 1e-12:
        raise TokenboundError(f"fractions sum to {sum(out.values())!r} > 1", param=param)
    return out


def delta_shares(delta: float, split: str | Mapping[str, float], sample_size: int, population: float,
                 exhaustive: bool = False) -> dict[str, float]:
    """δ shares {"main", "subsample"} whose sum is <= δ (see module doc).

    The shares depend only on δ, n and m, never on the observed losses. `exhaustive`: the sample is every
    position exactly once (a fact about the sampler's outcome, which is independent of the data), so nothing
    is estimated and the whole δ goes to the main bound.
    """
    if exhaustive:
        return {"main": delta, "subsample": 0.0}
    if isinstance(split, str):
        if split == "paper":
            return {"main": delta * sample_size / (sample_size + population),
                    "subsample": delta * population / (sample_size + population)}
        return {"main": delta / 2.0, "subsample": delta / 2.0}
    return {"main": delta * split["main"], "subsample": delta * split["subsample"]}


def check_message_bits(message_bits: float, param: str = "message_bits") -> float:
    try:
        bits = float(message_bits)
    except (TypeError, ValueError):
        raise TokenboundError(f"message length must be a number, got {message_bits!r}", param=param) from None
    if not math.isfinite(bits) or bits < 0:
        raise TokenboundError(f"message length must be a finite number >= 0, got {message_bits!r}", param=param)
    return bits


def check_extra_bits(extra_bits: Mapping[str, float] | None, param: str = "extra_bits") -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (extra_bits or {}).items():
        if name in RESERVED_PRIOR_ITEMS:
            raise TokenboundError(f"{name!r} is reserved for the bits tokenbound adds itself", param=param)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TokenboundError(f"{name!r} must be a finite number of bits >= 0, got {value!r}", param=param) from None
        if not math.isfinite(v) or v < 0:
            raise TokenboundError(f"{name!r} must be a finite number of bits >= 0, got {value!r}", param=param)
        out[str(name)] = v
    return out


def parse_extra_bits(specs, param: str = "extra_bits") -> dict[str, float]:
    """Parse repeated NAME=BITS strings (a choice among K alternatives made after seeing the data: log2 K bits)
    into {NAME: BITS}; NAME non-empty, unique, not one of RESERVED_PRIOR_ITEMS; BITS finite and >= 0."""
    out: dict[str, float] = {}
    for spec in specs or ():
        name, sep, value = str(spec).partition("=")
        name = name.strip()
        if not sep or not name:
            raise TokenboundError(f"expected NAME=BITS, got {spec!r}", param=param)
        if name in out:
            raise TokenboundError(f"{name!r} is given twice", param=param)
        try:
            bits = float(value)
        except ValueError:
            raise TokenboundError(f"{name!r} needs a number of bits, got {value!r}", param=param) from None
        out[name] = bits
    return check_extra_bits(out, param)


def message_prior_items(message_bits: float, prefix_free: bool) -> dict[str, float]:
    """{"message": L[, "message_prefix": Elias-gamma bits]}: the message's share of the prior, prefix-free.

    A length that is not prefix-free is first rounded up to whole bits (a decoder reads whole bits),
    then preceded by the Elias-gamma code of that length: 2⌊log2 L⌋ + 1 bits (docs/theory.md §3).
    """
    if prefix_free:
        return {"message": message_bits}
    whole = math.ceil(message_bits)
    if whole < 1:
        raise TokenboundError("an empty message must be declared prefix-free", param="message_bits")
    return {"message": float(whole), "message_prefix": float(elias_gamma_bits(whole))}
