"""``prepare --tokenizer bpe:N --tokenizer-corpus SPEC`` (docs/data.md): fit the BPE on another corpus, proven
disjoint from the one stored, so that the tokenizer is fixed independently of every stored document.

Disjointness is checked, not assumed: first the stored corpus is read once for the resolved location (file, or
file and line/row) of every document and the content hash (sha256 of its UTF-8 text) of every stored one (usable,
non-empty); then, while the BPE reads the tokenizer corpus, a document read from a location the stored corpus
also reads is an error (the corpora overlap: e.g. ``stdlib+tests`` for ``stdlib``), and a document whose content
equals a stored document's (e.g. the same one-line ``__init__.py`` in two packages) is left out of the fit and
counted. The BPE therefore never sees the text of a stored document.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import TokenboundError
from .chunking import safe_parts
from .corpus import Corpus, Document, DocumentProblem
from .tally import MAX_PROBLEM_EXAMPLES, UNREADABLE, content_bytes, corpus_progress, usable
from .tokenizers import HFTokenizer, train_bpe

TOKENIZER_CORPUS_RULE = ("the tokenizer corpus reads no file (resolved path; with the line or row for JSONL and "
                         "Parquet) that the corpus reads, and its documents whose content (sha256 of the UTF-8 "
                         "text) is that of a stored document of the corpus are left out of the fit")
# Corpora whose deliberately undecodable files (the standard library's test fixtures) are always skipped.
SKIP_BAD_KINDS = ("stdlib", "python")


@dataclass
class _Stored:
    """What the stored corpus holds: every document's location and every stored document's content hash."""

    locations: set[str] = field(default_factory=set)
    contents: set[bytes] = field(default_factory=set)
    documents: int = 0


@dataclass
class _Read:
    """What the BPE read of the tokenizer corpus."""

    documents: int = 0                # documents of the tokenizer corpus
    used_documents: int = 0           # fitted on (some only in part, at the cap)
    used_bytes: int = 0
    capped: bool = False
    shared: int = 0                   # left out: same content as a stored document
    shared_examples: list[str] = field(default_factory=list)
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)      # the corpus hash, as source.sha256
    identities: "hashlib._Hash" = field(default_factory=hashlib.sha256)  # of the documents fitted on
    error: TokenboundError | None = None


def _texts(doc: Document) -> Iterator[str]:
    """A document's text, in safe parts if it is streamed (raises DocumentProblem if it turns out unreadable)."""
    if doc.stream is None:
        yield doc.text
    else:
        yield from safe_parts(doc.stream(), any_boundary=False)


def _content_sha(doc: Document) -> bytes:
    """sha256 of what the corpus hash hashes for `doc` (streamed text read through; UNREADABLE if it fails)."""
    if doc.stream is None:
        return hashlib.sha256(content_bytes(doc)).digest()
    sha = hashlib.sha256()
    try:
        for piece in doc.stream():
            sha.update(piece.encode("utf-8"))
    except DocumentProblem:
        return hashlib.sha256(UNREADABLE).digest()
    return sha.digest()


def _stored(corpus: Corpus, skip_bad_files: bool) -> _Stored:
    out = _Stored()
    with corpus_progress(corpus, "checking the corpus against the tokenizer corpus") as bar:
        for doc in corpus.documents():
            bar.update(doc.progress)
            out.locations.add(corpus.location(doc.identity))
            out.documents += 1
            if doc.problem is None and usable(doc, True, None):
                out.contents.add(_content_sha(doc))
            elif doc.problem is not None and not skip_bad_files:
                usable(doc, False, None)  # the writing pass would refuse it too: say so now
    return out


def _fit_texts(tok_corpus: Corpus, stored: _Stored, corpus: Corpus, max_bytes: int, skip_bad_files: bool,
               read: _Read) -> Iterator[str]:
    """The tokenizer corpus's text for the BPE (module docstring), up to `max_bytes`; reads it to the end for its
    hash and the location check. Errors end the iteration and are kept in `read.error` (an exception raised
    inside the Rust trainer would lose its type)."""
    try:
        with corpus_progress(tok_corpus, "reading the tokenizer corpus") as bar:
            for doc in tok_corpus.documents():
                bar.update(doc.progress)
                read.documents += 1
                where = tok_corpus.location(doc.identity)
                if where in stored.locations:
                    raise TokenboundError(f"reads {where}, which --corpus "
                                          f"{corpus.spec} reads too; the two corpora must be disjoint",
                                          param="tokenizer_corpus", value=tok_corpus.spec)
                sha = _content_sha(doc)
                read.digest.update(f"{doc.identity}\0{sha.hex()}\n".encode())
                if not usable(doc, skip_bad_files, None) or read.capped:
                    continue
                if sha in stored.contents:
                    read.shared += 1
                    if len(read.shared_examples) < MAX_PROBLEM_EXAMPLES:
                        read.shared_examples.append(doc.identity)
                    continue
                try:
                    for i, text in enumerate(_texts(doc)):
                        size = len(text.encode("utf-8"))
                        if read.used_bytes + size > max_bytes and read.used_bytes > 0:
                            read.capped = True
                            break
                        read.used_bytes += size
                        if i == 0:
                            read.used_documents += 1
                            read.identities.update(f"{doc.identity}\n".encode("utf-8"))
                        yield text
                except DocumentProblem as e:
                    if not skip_bad_files:
                        raise TokenboundError(f"{e} (use --skip-bad-files to skip such documents)") from None
    except TokenboundError as e:
        read.error = e


def fit_on_corpus(corpus: Corpus, tok_corpus: Corpus, n: int, spec: str, *, skip_bad_files: bool,
                  max_bytes: int) -> tuple[HFTokenizer, dict]:
    """Train `spec` (bpe:N) on `tok_corpus`, checked disjoint from `corpus`; the tokenizer and its manifest fields
    (``bpe``, ``tokenizer_fit`` with mode ``tokenizer-corpus``)."""
    if tok_corpus.pretokenized:
        raise TokenboundError("a tokens: corpus has no text to fit on", param="tokenizer_corpus", value=tok_corpus.spec)
    stored = _stored(corpus, skip_bad_files)
    read = _Read()
    tok_skip = skip_bad_files or tok_corpus.describe().get("kind") in SKIP_BAD_KINDS
    tok = train_bpe(_fit_texts(tok_corpus, stored, corpus, max_bytes, tok_skip, read), n, spec)
    if read.error is not None:
        raise read.error
    if read.used_documents == 0:
        raise TokenboundError(f"no non-empty document to train {spec} on "
                              f"({read.shared} share their content with --corpus {corpus.spec})",
                              param="tokenizer_corpus", value=tok_corpus.spec)
    bpe = {"train_max_bytes": max_bytes, "train_bytes": read.used_bytes, "train_documents": read.used_documents,
           "capped": read.capped, "tokenizer_ids": tok.num_ids,
           "trained_on": "the tokenizer corpus only (disjoint from the stored corpus), in its order, up to "
                         "train_max_bytes of UTF-8 text"}
    fit = {"mode": "tokenizer-corpus",
           "corpus": {**tok_corpus.describe(), "sha256": read.digest.hexdigest(), "documents": read.documents,
                      "skip_bad_files": tok_skip},
           "documents": read.used_documents, "bytes": read.used_bytes,
           "identities_sha256": read.identities.hexdigest(),
           "disjoint": {"rule": TOKENIZER_CORPUS_RULE, "corpus_documents_checked": stored.documents,
                        "shared_content_left_out": read.shared,
                        "shared_content_examples": read.shared_examples}}
    return tok, {"bpe": bpe, "tokenizer_fit": fit}
