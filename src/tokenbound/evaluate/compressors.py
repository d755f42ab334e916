"""Real compressors beside every certified rate: gzip -9 and xz -9e on the text of the certified stream.

A certificate's bits per byte is a *guaranteed* rate on the data distribution; these are the rates two ordinary
compressors *actually achieve* on the very text that was certified, so a reader sees at once whether the
guarantee beats them. They are reference numbers, not bounds, and nothing in a certificate depends on them.

The text is rebuilt from the store: each document's ids (its end-of-text id dropped) decoded with the store's
own tokenizer to UTF-8 bytes, and the documents joined by one NUL byte (the compressors must also be told where
documents end, as the model is by its end-of-text token). The denominator is the text bytes without the
separators, the same byte count the certificate's bits per byte divides by, so the compressors' rates are, if
anything, slightly pessimistic (by at most #documents bytes of separators). Decoding is checked against the
store's recorded byte count; a store without a tokenizer (a ``tokens:`` corpus) has no text and gets no rates.
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
from dataclasses import asdict, dataclass
from typing import Any

from ..data.store import TokenStore

DECODE_CHUNK = 256  # documents decoded per tokenizer call


@dataclass(frozen=True)
class CompressorRates:
    """Bits per byte of gzip -9 and xz -9e on one store's text (see the module docstring)."""

    gzip_bits_per_byte: float
    xz_bits_per_byte: float
    num_bytes: int
    text_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "gzip": "gzip -9 (zlib, mtime 0)", "xz": "xz -9e (lzma, preset 9 | extreme)",
                "text": "documents decoded with the store's tokenizer, joined by one NUL byte; denominator: "
                        "the text bytes without separators"}


_CACHE: dict[str, CompressorRates | None] = {}


def store_text(store: TokenStore) -> bytes | None:
    """The store's text as compressed here, or None when the store has no tokenizer."""
    tok = store.tokenizer
    if tok is None:
        return None
    docs = [store.document(j) for j in range(store.num_documents)]
    docs = [d[:-1] if len(d) and int(d[-1]) == store.eot else d for d in docs]
    texts: list[str] = []
    batch = getattr(tok, "decode_batch", None)
    for a in range(0, len(docs), DECODE_CHUNK):
        chunk = [[int(i) for i in d] for d in docs[a:a + DECODE_CHUNK]]
        texts += batch(chunk) if batch is not None else [tok.decode(ids) for ids in chunk]
    return b"\x00".join(t.encode("utf-8") for t in texts)


def compressor_rates(store: TokenStore) -> CompressorRates | None:
    """gzip -9 and xz -9e rates on `store`'s text; None without a tokenizer. Cached per store sha256."""
    key = store.sha256
    if key in _CACHE:
        return _CACHE[key]
    data = store_text(store)
    rates = None
    if data is not None:
        num_bytes = len(data) - max(store.num_documents - 1, 0)
        if num_bytes > 0:
            gz = gzip.compress(data, compresslevel=9, mtime=0)
            xz = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
            rates = CompressorRates(8.0 * len(gz) / num_bytes, 8.0 * len(xz) / num_bytes, num_bytes,
                                    hashlib.sha256(data).hexdigest())
    _CACHE[key] = rates
    return rates
