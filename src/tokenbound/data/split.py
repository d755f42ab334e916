"""The held-out split (DESIGN §4): whole documents, chosen by a seeded hash of their identity.

A document is held out iff  u = int(blake2b-64(f"{seed}:{identity}")) / 2^64  <  fraction.
The choice depends only on (seed, identity, fraction) — never on a document's position, on the other
documents, or on the data's content — so it is reproducible, independent of the corpus order, and
monotone in `fraction` (a document held out at F is held out at every F' > F).
"""
from __future__ import annotations

import hashlib

from ..errors import TokenboundError

SPLIT_RULE = "blake2b-64(f'{seed}:{identity}') / 2^64 < val_fraction"


def check_val_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:  # also rejects NaN
        raise TokenboundError(f"--val-fraction: must be in [0, 1), got {fraction}")
    return fraction


def held_out_score(seed: int, identity: str) -> float:
    """The document's uniform-looking number in [0, 1)."""
    digest = hashlib.blake2b(f"{seed}:{identity}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def is_held_out(seed: int, identity: str, fraction: float) -> bool:
    return fraction > 0.0 and held_out_score(seed, identity) < fraction
