"""TokenStore: a token stream on disk as a memmap plus a document index (docs/design.md §4, §6).

Layout of a store directory:
- ``tokens.bin``      the stream x_0 … x_{m−1}, uint16 if vocab_size <= 65 535 else uint32. Every document's
                      tokens are followed by one ``eot`` id, so document j occupies
                      [doc_offsets[j], doc_offsets[j+1]) and its last token is eot (predicting the end of a
                      document is a target like any other). A virtual eot precedes the stream (docs/design.md §3).
- ``doc_offsets.npy`` int64 start of each document (doc_offsets[0] == 0, strictly increasing).
- ``tokenizer.json``  optional, the tokenizer that produced the ids (for ``decode``).
- ``manifest.json``   kind, vocab_size, eot, dtype, num_tokens, num_documents, num_bytes (UTF-8 bytes of the
                      source text, when known), tokenizer spec, source description, sha256 of tokens.bin
                      and doc_offsets.npy.
- ``val/``            optional held-out TokenStore (whole documents; never used for training or a train bound).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..artifacts import KIND_TOKENSTORE, MANIFEST, atomic_output_dir, make_manifest, read_manifest, sha256_file, write_json
from ..errors import TokenboundError


CHECK_CHUNK_BYTES = 1 << 24  # tokens.bin is re-hashed in blocks of this size by TokenStore.check


def combined_sha256(tokens_sha256: str, doc_offsets_sha256: str) -> str:
    """The store's ``sha256``: of the two files' hex digests, concatenated (what certificates cite)."""
    import hashlib

    return hashlib.sha256(tokens_sha256.encode() + doc_offsets_sha256.encode()).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


class TokenStore:
    """Read-only view of a store directory. Open with ``TokenStore.open(dir)``."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest
        self.vocab_size = int(manifest["vocab_size"])
        self.eot = int(manifest["eot"])
        dtype = np.dtype(manifest["dtype"])
        try:
            self.tokens = np.memmap(self.path / "tokens.bin", dtype=dtype, mode="r") \
                if manifest["num_tokens"] > 0 else np.zeros(0, dtype=dtype)
        except (ValueError, OSError) as e:  # e.g. a size that is not a whole number of ids
            raise TokenboundError(f"{self.path / 'tokens.bin'}: cannot be read as {dtype} ids ({e})") from None
        try:
            self.doc_offsets = np.load(self.path / "doc_offsets.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # truncated, not .npy, or an object array
            why = "not in .npy format" if "pickle" in str(e) else str(e)  # numpy calls any non-.npy file pickled
            raise TokenboundError(f"{self.path / 'doc_offsets.npy'}: not a readable .npy array ({why})") from None
        if self.doc_offsets.ndim != 1 or self.doc_offsets.dtype.kind not in "iu":
            raise TokenboundError(f"{self.path / 'doc_offsets.npy'}: expected a 1-D integer array, got "
                                  f"{self.doc_offsets.dtype} of shape {self.doc_offsets.shape}")
        self._tokenizer = None
        self._checked = False

    @classmethod
    def open(cls, path: str | Path, *, check: bool = False, param: str = "data") -> "TokenStore":
        """Open the store at `path`; with `check`, also run `check(param)` (one pass over tokens.bin)."""
        path = Path(path)
        man = read_manifest(path, KIND_TOKENSTORE)
        for f in ("tokens.bin", "doc_offsets.npy"):
            if not (path / f).exists():
                raise TokenboundError(f"{path}: TokenStore is missing {f}")
        store = cls(path, man)
        if store.tokens.shape[0] != man["num_tokens"]:
            raise TokenboundError(f"{path}/tokens.bin: holds {store.tokens.shape[0]} tokens, manifest says {man['num_tokens']}")
        return store.check(param) if check else store

    def check(self, param: str = "data", vocab_size: int | None = None) -> "TokenStore":
        """Refuse a store that is not what its manifest says, before anything uses it (docs/data.md).

        One pass over tokens.bin: its sha256 and doc_offsets.npy's must give the manifest's ``sha256`` (and
        each file its own entry in ``files_sha256`` where recorded), every id must be below ``vocab_size``
        and the document index must be well formed. With `vocab_size` (a model's), the store's vocabulary
        must equal it. Errors are one line naming `param` (the caller's parameter that gave the store) and the
        file; returns the store.
        """
        import hashlib

        if vocab_size is not None and int(vocab_size) != self.vocab_size:
            raise TokenboundError(f"store vocabulary has {self.vocab_size} ids but the model's has {int(vocab_size)}",
                                  param=param, value=self.path)
        if self._checked:
            return self
        h = hashlib.sha256()
        top = -1
        with open(self.path / "tokens.bin", "rb") as f:
            while block := f.read(CHECK_CHUNK_BYTES):
                h.update(block)
                ids = np.frombuffer(block[:len(block) - len(block) % self.tokens.dtype.itemsize],
                                    dtype=self.tokens.dtype)
                if ids.size:
                    top = max(top, int(ids.max()))
        digests = {"tokens.bin": h.hexdigest(),
                   "doc_offsets.npy": sha256_file(self.path / "doc_offsets.npy")}
        recorded = self.manifest.get("files_sha256") or {}
        for name, digest in digests.items():
            if name in recorded and recorded[name] != digest:
                raise TokenboundError("sha256 does not match the store's manifest (the file was modified or "
                                      "corrupted)", param=param, value=self.path / name)
        if combined_sha256(digests["tokens.bin"], digests["doc_offsets.npy"]) != self.sha256:
            raise TokenboundError("tokens.bin and doc_offsets.npy do not hash to the manifest's sha256 (a file was "
                                  "modified or corrupted)", param=param, value=self.path)
        if top >= self.vocab_size:
            raise TokenboundError(f"token id {top} is outside the store's vocabulary [0, {self.vocab_size})",
                                  param=param, value=self.path / "tokens.bin")
        off = self.doc_offsets
        if off.ndim != 1 or off.size != self.num_documents or (off.size and (
                int(off[0]) != 0 or (np.diff(off) <= 0).any() or int(off[-1]) >= self.num_tokens)):
            raise TokenboundError(f"not {self.num_documents} strictly increasing document starts from 0 below "
                                  f"{self.num_tokens}", param=param, value=self.path / "doc_offsets.npy")
        self._checked = True
        return self

    # -- sizes -------------------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return int(self.manifest["num_tokens"])

    @property
    def num_documents(self) -> int:
        return int(self.manifest["num_documents"])

    @property
    def sha256(self) -> str:
        """Content hash of the stream and its document index (what certificates cite)."""
        return self.manifest["sha256"]

    @property
    def num_bytes(self) -> int | None:
        return self.manifest.get("num_bytes")

    @property
    def mean_bytes_per_token(self) -> float | None:
        nb = self.num_bytes
        return None if not nb or not self.num_tokens else nb / self.num_tokens

    def document_bounds(self, j: int) -> tuple[int, int]:
        """[start, end) of document j in the stream (end includes its eot)."""
        start = int(self.doc_offsets[j])
        end = int(self.doc_offsets[j + 1]) if j + 1 < self.num_documents else self.num_tokens
        return start, end

    def document(self, j: int) -> np.ndarray:
        start, end = self.document_bounds(j)
        return np.asarray(self.tokens[start:end])

    def document_lengths(self) -> np.ndarray:
        """Tokens in each document, its eot included (int64, sums to num_tokens)."""
        return np.diff(np.append(self.doc_offsets, self.num_tokens)).astype(np.int64)

    def document_of(self, positions: np.ndarray) -> np.ndarray:
        """Index of the document holding each stream position."""
        return np.searchsorted(self.doc_offsets, np.asarray(positions), side="right") - 1

    @property
    def val(self) -> "TokenStore | None":
        v = self.path / "val"
        return TokenStore.open(v) if (v / MANIFEST).exists() else None

    # -- text ----------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The tokenizer that produced the ids (see data.tokenizers.load_tokenizer), or None."""
        if self._tokenizer is None:
            from .tokenizers import load_store_tokenizer

            self._tokenizer = load_store_tokenizer(self)
        return self._tokenizer

    def decode(self, ids: Iterable[int]) -> str:
        tok = self.tokenizer
        if tok is None:
            raise TokenboundError(f"{self.path}: store has no tokenizer, cannot decode")
        return tok.decode([int(i) for i in ids if int(i) != self.eot])

    def __repr__(self) -> str:
        return (f"TokenStore({str(self.path)!r}, tokens={self.num_tokens}, documents={self.num_documents}, "
                f"vocab={self.vocab_size}, eot={self.eot})")


def write_store(out: str | Path, tokens: np.ndarray, doc_offsets: np.ndarray, vocab_size: int, eot: int, *,
                force: bool = False, num_bytes: int | None = None, tokenizer_spec: str | None = None,
                tokenizer_json: str | None = None, source: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> TokenStore:
    """Write an in-memory stream as a TokenStore (atomically). For tests, synthetic data and small corpora;
    `prepare` streams large corpora with the same layout."""
    tokens = np.asarray(tokens)
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    if vocab_size < 2:
        raise TokenboundError(f"vocab size must be >= 2, got {vocab_size}")
    if not 0 <= eot < vocab_size:
        raise TokenboundError(f"eot id {eot} is outside the vocabulary [0, {vocab_size})")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise TokenboundError(f"token ids must be in [0, {vocab_size}), found {int(tokens.min())}..{int(tokens.max())}")
    with atomic_output_dir(out, force=force) as tmp:
        tokens.astype(token_dtype(vocab_size)).tofile(tmp / "tokens.bin")
        np.save(tmp / "doc_offsets.npy", doc_offsets)
        if tokenizer_json is not None:
            (tmp / "tokenizer.json").write_text(tokenizer_json)
        write_json(tmp / MANIFEST, store_manifest(tmp, vocab_size, eot, int(tokens.size), int(doc_offsets.size),
                                                  num_bytes=num_bytes, tokenizer_spec=tokenizer_spec,
                                                  source=source, extra=extra))
    return TokenStore.open(out)


def store_manifest(directory: Path, vocab_size: int, eot: int, num_tokens: int, num_documents: int, *,
                   num_bytes: int | None, tokenizer_spec: str | None, source: dict[str, Any] | None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Manifest for the tokens.bin / doc_offsets.npy already written in `directory`."""
    files = {name: sha256_file(directory / name) for name in ("tokens.bin", "doc_offsets.npy")}
    return make_manifest(KIND_TOKENSTORE, vocab_size=int(vocab_size), eot=int(eot),
                         dtype=token_dtype(vocab_size).name, num_tokens=num_tokens, num_documents=num_documents,
                         num_bytes=num_bytes, tokenizer=tokenizer_spec, source=source or {},
                         sha256=combined_sha256(files["tokens.bin"], files["doc_offsets.npy"]),
                         files_sha256=files, **(extra or {}))
