"""What one `prepare` pass over a corpus saw (for the manifest), and the policy for bad and empty documents."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import TokenboundError
from .corpus import Corpus, Document

MAX_PROBLEM_EXAMPLES = 10
UNREADABLE = b"\0unreadable"  # stands for an unreadable document's content in the corpus hash


@dataclass
class Tally:
    """What the writing pass saw, for the manifest (corpus-level, shared by the train and val stores)."""

    documents: int = 0
    empty: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    roundtrip_mismatches: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    tokenizer_documents: int = 0      # usable documents of the tokenizer split (in neither store)
    tokenizer_bytes: int = 0
    tokenizer_identities: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    # the content sha256 of each stored document: every training one, and (sha256, UTF-8 bytes) of each held-out
    # one in store order, so that held-out documents whose text also occurs in training can be moved there
    train_contents: set[str] = field(default_factory=set)
    val_contents: list[tuple[str, int]] = field(default_factory=list)
    moved_to_train: int = 0

    def stored(self, part: str, sha256_hex: str, num_bytes: int) -> None:
        """Record a document written to the `part` ("train" or "val") store."""
        if part == "val":
            self.val_contents.append((sha256_hex, int(num_bytes)))
        else:
            self.train_contents.add(sha256_hex)

    def tokenizer_document(self, identity: str, num_bytes: int) -> None:
        self.tokenizer_documents += 1
        self.tokenizer_bytes += int(num_bytes)
        self.tokenizer_identities.update(f"{identity}\n".encode("utf-8"))

    def content(self, identity: str, sha256_hex: str) -> None:
        """Add one document to the corpus hash: sha256 over the lines ``identity NUL sha256(content)``."""
        self.digest.update(f"{identity}\0{sha256_hex}\n".encode())


def content_bytes(doc: Document) -> bytes:
    """What the corpus hash hashes for a (not streamed) document: its UTF-8 text, its ids, or UNREADABLE."""
    return doc.text.encode("utf-8") if doc.text is not None else \
        doc.ids.astype("<i8").tobytes() if doc.ids is not None else UNREADABLE


def usable(doc: Document, skip_bad_files: bool, tally: Tally | None) -> bool:
    """Policy for one document: raise on a bad one (unless skipping), skip empty ones; count both."""
    if doc.problem is not None:
        if not skip_bad_files:
            raise TokenboundError(f"{doc.problem} (use --skip-bad-files to skip such documents)")
        if tally is not None:
            tally.bad += 1
            if len(tally.bad_examples) < MAX_PROBLEM_EXAMPLES:
                tally.bad_examples.append(doc.problem)
        return False
    empty = doc.text == "" if doc.ids is None else doc.ids.size == 0
    if empty and tally is not None:
        tally.empty += 1
    return not empty


def corpus_progress(corpus: Corpus, desc: str):
    from ..progress import Progress  # a bar on a terminal, a line every few seconds in a log

    return Progress(corpus.progress_total, desc, corpus.progress_unit, unit_scale=True, leave=False)
