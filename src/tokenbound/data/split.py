"""The held-out split (docs/design.md §4): whole documents, chosen by a seeded hash of their identity.

A document is held out iff  u = int(blake2b-64(f"{seed}:{identity}")) / 2^64  <  fraction.
The choice depends only on (seed, identity, fraction) — never on a document's position, on the other
documents, or on the data's content — so it is reproducible, independent of the corpus order, and
monotone in `fraction` (a document held out at F is held out at every F' > F). One exception, applied after
the rule by `prepare`: a held-out document whose text equals a training document's goes to training
(DUPLICATES_RULE), so that the val split shares no document with training.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import TokenboundError

SPLIT_RULE = "blake2b-64(f'{seed}:{identity}') / 2^64 < val_fraction"
# applied after the rule: files with equal content on both sides of the split would make the val split share a
# document with training (data/encode.py, move_duplicates_to_train)
DUPLICATES_RULE = "a held-out document whose text equals a training document's is moved to the end of training"


def check_val_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:  # also rejects NaN
        raise TokenboundError(f"must be in [0, 1), got {fraction}", param="val_fraction")
    return fraction


def held_out_score(seed: int, identity: str) -> float:
    """The document's uniform-looking number in [0, 1)."""
    digest = hashlib.blake2b(f"{seed}:{identity}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def is_held_out(seed: int, identity: str, fraction: float) -> bool:
    return fraction > 0.0 and held_out_score(seed, identity) < fraction


# -- the tokenizer split (docs/data.md) -------------------------------------------------------------------
# A learned tokenizer (bpe:N) is fitted on documents that neither the training nor the held-out store holds.
TOKENIZER_SPLIT_RULE = ("not held out and blake2b-64(f'{seed}:tokenizer:{identity}') / 2^64 < tokenizer_fraction; "
                        "if no usable document qualifies, the one with the smallest such number")
DEFAULT_TOKENIZER_FRACTION = 0.05
TOKENIZER_FIT_MODES = ("split", "train-charged")


def check_tokenizer_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:  # also rejects NaN
        raise TokenboundError(f"must be in (0, 1), got {fraction}", param="tokenizer_fraction")
    return fraction


def tokenizer_score(seed: int, identity: str) -> float:
    """The document's number for the tokenizer split, independent of its held-out number."""
    return held_out_score(seed, f"tokenizer:{identity}")


def in_tokenizer_split(seed: int, identity: str, val_fraction: float, tokenizer_fraction: float) -> bool:
    """Whether the document goes to the tokenizer split (never when it is held out)."""
    return tokenizer_fraction > 0.0 and not is_held_out(seed, identity, val_fraction) \
        and tokenizer_score(seed, identity) < tokenizer_fraction


@dataclass
class Plan:
    """Where each document goes: "val" (held out), "tokenizer" (the tokenizer split, stored nowhere) or "train"."""

    seed: int
    val_fraction: float
    tokenizer_fraction: float = 0.0   # 0: no tokenizer split
    forced: str | None = None         # the one tokenizer-split document when no document qualified

    def part(self, identity: str) -> str:
        if is_held_out(self.seed, identity, self.val_fraction):
            return "val"
        if self.tokenizer_fraction > 0.0 and (identity == self.forced
                                              or tokenizer_score(self.seed, identity) < self.tokenizer_fraction):
            return "tokenizer"
        return "train"
