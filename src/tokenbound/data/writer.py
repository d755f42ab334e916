"""Streaming TokenStore writer: append documents batch by batch, then seal the store with its manifest.

Same layout as `store.write_store` (docs/design.md §4), but tokens.bin grows incrementally so that memory stays
bounded by one batch plus the document index (8 bytes per document).
"""
from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, write_json
from ..errors import TokenboundError
from .store import store_manifest, token_dtype


class StoreWriter:
    """Writes `directory`/tokens.bin and doc_offsets.npy. Invariant: after each `add_documents`, tokens.bin
    holds whole documents, each followed by one eot, and `offsets` holds the start of each."""

    def __init__(self, directory: Path, vocab_size: int, eot: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.vocab_size, self.eot = int(vocab_size), int(eot)
        self.dtype = token_dtype(vocab_size)
        self._file = open(self.directory / "tokens.bin", "wb")
        self.offsets = array("q")
        self.num_tokens = 0
        self.num_bytes = 0

    @property
    def num_documents(self) -> int:
        return len(self.offsets)

    def add_documents(self, docs: list[np.ndarray], num_bytes: int = 0) -> None:
        """Append documents (ids without their eot; non-empty) and the UTF-8 size of their text."""
        if not docs:
            return
        lengths = np.fromiter((d.size + 1 for d in docs), dtype=np.int64, count=len(docs))
        if (lengths < 2).any():
            raise ValueError("empty documents must be skipped before writing")
        starts = self.num_tokens + np.concatenate(([0], np.cumsum(lengths)[:-1]))
        flat = np.empty(int(lengths.sum()), dtype=np.int64)
        ends = starts - self.num_tokens + lengths
        for d, s, e in zip(docs, starts - self.num_tokens, ends):
            flat[s:e - 1] = d
        flat[ends - 1] = self.eot
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi >= self.vocab_size:
            raise TokenboundError(f"token id {lo if lo < 0 else hi} is outside the vocabulary [0, {self.vocab_size})")
        if int((flat == self.eot).sum()) != len(docs):
            raise TokenboundError(f"eot id {self.eot} occurs inside a document: the tokenizer produces it from "
                                  f"text (choose another --eot)")
        flat.astype(self.dtype).tofile(self._file)
        self.offsets.extend(starts.tolist())
        self.num_tokens += int(flat.size)
        self.num_bytes += int(num_bytes)

    def remove_documents(self, indices: list[int]) -> list[np.ndarray]:
        """Take the documents at `indices` out of the store and return their ids (without eot), in index order.
        Rewrites tokens.bin (reads the whole store: meant for the few documents `prepare` moves between stores);
        the caller adjusts `num_bytes`."""
        self._file.flush()
        tokens = np.fromfile(self.directory / "tokens.bin", dtype=self.dtype)
        starts = np.frombuffer(self.offsets, dtype=np.int64)
        ends = np.append(starts[1:], self.num_tokens)
        drop = sorted(set(int(i) for i in indices))
        taken = [tokens[starts[i]:ends[i] - 1].astype(np.int64) for i in drop]
        keep = np.setdiff1d(np.arange(len(starts)), drop)
        lengths = ends[keep] - starts[keep]
        kept = np.concatenate([tokens[starts[i]:ends[i]] for i in keep]) if keep.size else tokens[:0]
        self._file.close()
        self._file = open(self.directory / "tokens.bin", "wb")
        kept.tofile(self._file)
        self.offsets = array("q", np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64).tolist()
                             if keep.size else [])
        self.num_tokens = int(kept.size)
        return taken

    # -- one document in pieces (huge documents; bounded memory) ------------------------------------------
    def open_document(self) -> None:
        """Start a document written piece by piece; end it with close_document or discard_document."""
        self._mark = (self._file.tell(), self.num_tokens, self.num_bytes)

    def add_piece(self, ids: np.ndarray, num_bytes: int = 0) -> None:
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size or (ids == self.eot).any():
                raise TokenboundError(f"token ids {lo}..{hi}: outside the vocabulary [0, {self.vocab_size}) or "
                                      f"eot {self.eot} inside a document (choose another --eot)")
            ids.astype(self.dtype).tofile(self._file)
        self.num_tokens += int(ids.size)
        self.num_bytes += int(num_bytes)

    @property
    def open_document_tokens(self) -> int:
        return self.num_tokens - self._mark[1]

    def close_document(self) -> None:
        """End the open document with eot (it must have at least one token)."""
        if self.open_document_tokens == 0:
            raise ValueError("empty documents must be discarded, not closed")
        self.offsets.append(self._mark[1])
        np.array([self.eot], dtype=self.dtype).tofile(self._file)
        self.num_tokens += 1

    def discard_document(self) -> None:
        """Forget the open document: tokens.bin is cut back to where it started."""
        position, self.num_tokens, self.num_bytes = self._mark
        self._file.truncate(position)
        self._file.seek(position)

    def finish(self, *, tokenizer_spec: str | None, tokenizer_json: str | None, source: dict[str, Any],
               count_bytes: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close tokens.bin, write doc_offsets.npy, tokenizer.json and manifest.json; return the manifest."""
        self._file.close()
        np.save(self.directory / "doc_offsets.npy", np.frombuffer(self.offsets, dtype=np.int64))
        if tokenizer_json is not None:
            (self.directory / "tokenizer.json").write_text(tokenizer_json)
        manifest = store_manifest(self.directory, self.vocab_size, self.eot, self.num_tokens, self.num_documents,
                                  num_bytes=self.num_bytes if count_bytes else None, tokenizer_spec=tokenizer_spec,
                                  source=source, extra=extra)
        write_json(self.directory / MANIFEST, manifest)
        return manifest

    def close(self) -> None:
        self._file.close()
