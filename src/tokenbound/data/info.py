"""`tokenbound info`: a TokenStore's summary (sizes, vocabulary, frequent tokens, hashes) as a dict and as text."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TokenboundError
from ..fmt import plural
from .store import TokenStore

COUNT_CHUNK = 1 << 24       # tokens counted per step (bounded memory on big stores)
DENSE_COUNT_MAX_VOCAB = 1 << 24  # above this, count with np.unique instead of a dense bincount


def token_counts(store: TokenStore) -> tuple[np.ndarray, np.ndarray]:
    """(ids, counts) of the tokens that occur in the stream, ids ascending."""
    from ..progress import track

    dense = store.vocab_size <= DENSE_COUNT_MAX_VOCAB
    total = np.zeros(store.vocab_size if dense else 0, dtype=np.int64)
    sparse: dict[int, int] = {}
    for start in track(range(0, store.num_tokens, COUNT_CHUNK), "counting", "chunks", leave=False):
        chunk = np.asarray(store.tokens[start:start + COUNT_CHUNK])
        if chunk.size and int(chunk.max()) >= store.vocab_size:
            raise TokenboundError(f"{store.path / 'tokens.bin'}: token id {int(chunk.max())} is outside the store's "
                                  f"vocabulary [0, {store.vocab_size}) (the store is corrupt)")
        if dense:
            total += np.bincount(chunk, minlength=store.vocab_size)
        else:
            for i, c in zip(*np.unique(chunk, return_counts=True)):
                sparse[int(i)] = sparse.get(int(i), 0) + int(c)
    if dense:
        ids = np.flatnonzero(total)
        return ids, total[ids]
    ids = np.array(sorted(sparse), dtype=np.int64)
    return ids, np.array([sparse[i] for i in ids.tolist()], dtype=np.int64)


def _token_text(store: TokenStore, token: int) -> str | None:
    if token == store.eot:
        return "<eot>"
    tok = store.tokenizer
    return None if tok is None else tok.decode([token])


def store_info(path: str | Path, top: int = 10, *, include_val: bool = True) -> dict[str, Any]:
    """Summary of the store at `path` (and of its val/ store). Numbers are exact counts over the stream."""
    store = TokenStore.open(path)
    lengths = store.document_lengths()
    ids, counts = token_counts(store)
    order = np.lexsort((ids, -counts))[:max(top, 0)]  # most frequent first, ties by id
    man = store.manifest
    info: dict[str, Any] = {
        "path": str(store.path), "tokens": store.num_tokens, "documents": store.num_documents,
        "vocab_size": store.vocab_size, "eot": store.eot, "dtype": man["dtype"], "tokenizer": man.get("tokenizer"),
        "num_bytes": store.num_bytes, "bytes_per_token": store.mean_bytes_per_token,
        "mean_document_tokens": float(lengths.mean()) if lengths.size else None,
        "max_document_tokens": int(lengths.max()) if lengths.size else None,
        "distinct_tokens": int(ids.size),
        "most_frequent": [{"id": int(ids[i]), "count": int(counts[i]), "fraction": counts[i] / store.num_tokens,
                           "text": _token_text(store, int(ids[i]))} for i in order],
        "source": man.get("source", {}).get("spec"), "sha256": store.sha256,
    }
    if include_val:
        val = store.val
        info["val"] = None if val is None else store_info(val.path, top=0, include_val=False)
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for `store_info`'s dict."""
    lines = [f"{info['path']}  (source {info['source']}, tokenizer {info['tokenizer']})",
             f"  tokens        {info['tokens']:,}",
             f"  documents     {info['documents']:,}"
             + (f"  (mean {info['mean_document_tokens']:.1f} tokens incl. eot, max {info['max_document_tokens']:,})"
                if info["documents"] else ""),
             f"  vocab         {info['vocab_size']:,} ({info['distinct_tokens']:,} used), eot {info['eot']}, "
             f"{info['dtype']}"]
    if info["num_bytes"] is not None:
        bpt = f", {info['bytes_per_token']:.3f} bytes/token" if info["bytes_per_token"] else ""
        lines.append(f"  text          {info['num_bytes']:,} UTF-8 bytes{bpt}")
    lines.append(f"  sha256        {info['sha256']}")
    if info["most_frequent"]:
        lines.append("  most frequent tokens:")
        for t in info["most_frequent"]:
            text = "" if t["text"] is None else f"  {t['text']!r}"
            lines.append(f"    {t['id']:>8}  {t['count']:>12,}  {100 * t['fraction']:6.2f}%{text}")
    val = info.get("val")
    if val is not None:
        lines.append(f"  val/          {plural(val['tokens'], 'token')}, {plural(val['documents'], 'document')}, "
                     f"sha256 {val['sha256']}")
    return "\n".join(lines)
