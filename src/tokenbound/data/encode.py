"""The writing pass of `prepare` (docs/data.md): encode every document and append it to the train or the val
store, in corpus order, in bounded memory.

Pipeline: the main thread reads documents into batches of about BATCH_BYTES. A batch goes to one background
thread that runs the Rust encoder (parallel over all cores, without the GIL); meanwhile the main thread turns the
previous batch's output into arrays, checks its round trip and writes it, then reads the next batch. At most two
batches are in memory; the output order is the corpus order, so the store is the same on every run.
"""
from __future__ import annotations

import hashlib
import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .chunking import cuttable, safe_parts
from .corpus import Corpus, Document, DocumentProblem
from .split import Plan
from .tally import UNREADABLE, Tally, content_bytes, corpus_progress, usable
from .tokenizers import HFTokenizer, TextTokenizer
from .writer import StoreWriter

BATCH_BYTES = 1 << 21           # ~2 MiB of text per encode batch (two batches in flight)
BATCH_DOCS = 4096


def _start(tok: TextTokenizer, texts: list[str]) -> Any:
    """The part of encoding a batch that runs in the background thread."""
    return tok.encodings(texts) if isinstance(tok, HFTokenizer) else tok.encode_batch(texts)


def _finish(tok: TextTokenizer, raw: Any, texts: list[str]) -> tuple[list[np.ndarray], list[bool]]:
    """A batch's ids and, for HF tokenizers, whether decode(encode(text)) differs from the text, per document."""
    if not isinstance(tok, HFTokenizer):
        return raw, [False] * len(texts)
    ids = tok.ids_of(raw)
    return ids, tok.roundtrip_mismatches(texts, ids)


def _encode(tok: TextTokenizer, texts: list[str]) -> tuple[list[np.ndarray], list[bool]]:
    return _finish(tok, _start(tok, texts), texts)


class _Batch:
    """Documents read but not yet written: their texts (or ids), UTF-8 sizes and parts."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.sizes: list[int] = []
        self.held: list[bool] = []
        self.hashes: list[str] = []   # sha256 of each document's content
        self.bytes = 0


def write_documents(corpus: Corpus, tok: TextTokenizer | None, train: StoreWriter, val: StoreWriter | None,
                    plan: Plan, skip_bad_files: bool, tally: Tally) -> None:
    """Encode and write every usable document of `corpus` that `plan` puts in train or val; count the rest."""
    pending: deque[tuple[_Batch, Future]] = deque()

    def write(batch: _Batch, ids: list[np.ndarray], mismatched: list[bool]) -> None:
        for part, writer in (("train", train), ("val", val)):
            pick = [i for i, h in enumerate(batch.held) if h == (part == "val")]
            if pick:
                writer.add_documents([ids[i] for i in pick], sum(batch.sizes[i] for i in pick))
                tally.roundtrip_mismatches[part] += sum(mismatched[i] for i in pick)
                for i in pick:
                    tally.stored(part, batch.hashes[i], batch.sizes[i])

    def drain(limit: int) -> None:
        while len(pending) > limit:
            batch, fut = pending.popleft()
            if tok is None:
                write(batch, [d.ids for d in batch.docs], [False] * len(batch.docs))
            else:
                write(batch, *_finish(tok, fut.result(), [d.text for d in batch.docs]))

    def flush(batch: _Batch) -> _Batch:
        if batch.docs:
            fut: Future = Future()
            if tok is None:
                fut.set_result(None)
            else:
                fut = pool.submit(_start, tok, [d.text for d in batch.docs])
            pending.append((batch, fut))
            drain(limit=1)  # finish the previous batch while this one encodes
        return _Batch()

    with ThreadPoolExecutor(max_workers=1) as pool, corpus_progress(corpus, "prepare") as bar:
        batch = _Batch()
        for doc in corpus.documents():
            bar.update(doc.progress)
            tally.documents += 1
            if doc.stream is not None:  # a huge file: written in parts, after everything before it
                batch = flush(batch)
                drain(limit=0)
                part = plan.part(doc.identity)
                if part == "tokenizer":
                    _skip_streamed(doc, skip_bad_files, tally)
                else:
                    _write_streamed(doc, tok, train if part == "train" else val, part, skip_bad_files, tally)
                continue
            content = content_bytes(doc)
            digest = hashlib.sha256(content).hexdigest()
            tally.content(doc.identity, digest)
            if not usable(doc, skip_bad_files, tally):
                continue
            part = plan.part(doc.identity)
            if part == "tokenizer":  # fitted the tokenizer; stored in neither store
                tally.tokenizer_document(doc.identity, len(content))
                continue
            batch.docs.append(doc)
            batch.sizes.append(len(content) if doc.text is not None else 0)  # num_bytes counts text only
            batch.held.append(part == "val")
            batch.hashes.append(digest)
            batch.bytes += len(content)
            if batch.bytes >= BATCH_BYTES or len(batch.docs) >= BATCH_DOCS:
                batch = flush(batch)
        flush(batch)
        drain(limit=0)
    if val is not None:
        move_duplicates_to_train(train, val, tally)


def move_duplicates_to_train(train: StoreWriter, val: StoreWriter, tally: Tally) -> None:
    """A held-out document whose text also occurs among the training documents (two files with the same content
    on either side of the split) is moved to the end of the training store, so that the val split shares no
    document with training by construction (a test-set certificate needs that, docs/theory.md §10)."""
    move = [i for i, (digest, _) in enumerate(tally.val_contents) if digest in tally.train_contents]
    if not move:
        return
    num_bytes = sum(tally.val_contents[i][1] for i in move)
    train.add_documents(val.remove_documents(move), num_bytes)
    val.num_bytes -= num_bytes
    tally.moved_to_train = len(move)


def _skip_streamed(doc: Document, skip_bad_files: bool, tally: Tally) -> None:
    """Read one huge tokenizer-split document through (for the corpus hash and the split's record) without
    storing it."""
    sha, size = hashlib.sha256(), 0
    try:
        for piece in doc.stream():
            data = piece.encode("utf-8")
            sha.update(data)
            size += len(data)
    except DocumentProblem as e:
        tally.content(doc.identity, hashlib.sha256(UNREADABLE).hexdigest())
        usable(Document(doc.identity, problem=str(e)), skip_bad_files, tally)  # raises unless skipping
        return
    tally.content(doc.identity, sha.hexdigest())
    if size == 0:
        tally.empty += 1
        return
    tally.tokenizer_document(doc.identity, size)


def _write_streamed(doc: Document, tok: TextTokenizer, writer: StoreWriter, part: str, skip_bad_files: bool,
                    tally: Tally) -> None:
    """Encode and write one huge document in parts (bounded memory, parts encoded in parallel). Byte and
    BPE ids are cut-invariant at safe boundaries; other tokenizers get the whole text at once."""
    sha, num_bytes = hashlib.sha256(), 0
    writer.open_document()
    try:
        pieces = doc.stream()
        parts = safe_parts(pieces, any_boundary=tok.spec == "byte") if cuttable(tok.spec) else iter(["".join(pieces)])
        group: list[str] = []
        mismatched = False
        for text in itertools.chain(parts, [None]):
            if text is not None:
                group.append(text)
            if group and (text is None or sum(map(len, group)) >= BATCH_BYTES):
                ids, bad = _encode(tok, group)
                data = [t.encode("utf-8") for t in group]
                for d in data:
                    sha.update(d)
                    num_bytes += len(d)
                writer.add_piece(np.concatenate(ids), sum(map(len, data)))
                mismatched |= any(bad)
                group = []
    except DocumentProblem as e:
        writer.discard_document()
        tally.content(doc.identity, hashlib.sha256(UNREADABLE).hexdigest())
        usable(Document(doc.identity, problem=str(e)), skip_bad_files, tally)  # raises unless skipping
        return
    tally.content(doc.identity, sha.hexdigest())
    if writer.open_document_tokens == 0:
        writer.discard_document()
        tally.empty += 1
        return
    writer.close_document()
    tally.roundtrip_mismatches[part] += int(mismatched)
    tally.stored(part, sha.hexdigest(), num_bytes)
