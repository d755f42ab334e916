"""`tokenbound prepare`: corpus + tokenizer -> TokenStore (+ held-out `val/` store) (DESIGN §4–§6).

Two streaming passes over the corpus at most:
1. (`bpe:N` only) train the BPE on the *tokenizer split* (default; documents stored in neither store) or,
   with ``tokenizer_fit="train-charged"``, on the training documents, in corpus order, up to
   `bpe_train_max_bytes` of UTF-8 text (the cap bounds memory and time; it is recorded in the manifest).
2. Encode every document (batches encoded in a background thread by the Rust tokenizer, which uses all
   cores, while the main thread reads the next batch; output order = corpus order) and append it, followed
   by eot, to the train or the val store according to `split.is_held_out` (tokenizer-split documents are
   only counted; docs/data.md).
Everything is written inside `atomic_output_dir`: on any error nothing is left behind.
"""
from __future__ import annotations

import hashlib
import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts import atomic_output_dir, sha256_bytes
from ..errors import TokenboundError
from .chunking import cuttable, safe_parts
from .corpus import Corpus, Document, DocumentProblem, open_corpus
from .split import (DEFAULT_TOKENIZER_FRACTION, SPLIT_RULE, TOKENIZER_FIT_MODES, TOKENIZER_SPLIT_RULE,
                    check_tokenizer_fraction, check_val_fraction, is_held_out, tokenizer_score)
from .store import TokenStore
from .tokenizers import (BPE_CODE, HFTokenizer, TextTokenizer, bpe_code_length, build_tokenizer,
                         check_tokenizer_spec, parse_bpe_size, train_bpe)
from .writer import StoreWriter

BPE_TRAIN_MAX_BYTES = 1 << 27   # 128 MiB of training text fed to the BPE trainer at most
BATCH_BYTES = 1 << 22           # ~4 MiB of text per encode batch
BATCH_DOCS = 4096
MAX_PROBLEM_EXAMPLES = 10
UNREADABLE = b"\0unreadable"  # stands for an unreadable document's content in the corpus hash


@dataclass
class _Plan:
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


@dataclass
class _Tally:
    """What pass 2 saw, for the manifest (corpus-level, shared by the train and val stores)."""

    documents: int = 0
    empty: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    roundtrip_mismatches: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    tokenizer_documents: int = 0      # usable documents of the tokenizer split (in neither store)
    tokenizer_bytes: int = 0
    tokenizer_identities: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def tokenizer_document(self, identity: str, num_bytes: int) -> None:
        self.tokenizer_documents += 1
        self.tokenizer_bytes += int(num_bytes)
        self.tokenizer_identities.update(f"{identity}\n".encode("utf-8"))


def _usable(doc: Document, skip_bad_files: bool, tally: _Tally | None) -> bool:
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


def _progress(corpus: Corpus, desc: str):
    from ..progress import Progress  # a bar on a terminal, a line every few seconds in a log

    return Progress(corpus.progress_total, desc, corpus.progress_unit, unit_scale=True, leave=False)


def _bpe_training_texts(corpus: Corpus, plan: _Plan, part: str, max_bytes: int, skip_bad_files: bool,
                        stats: dict) -> Iterator[str]:
    """The text of the documents of `part` ("tokenizer" or "train") in corpus order until `max_bytes`. With the
    tokenizer split and no document in it, the training document with the smallest tokenizer number becomes its
    only document (``plan.forced``). Errors are stored in `stats["error"]` and end the iteration, because an
    exception raised inside the Rust trainer would lose its type."""
    best: tuple[float, str, str] | None = None
    try:
        with _progress(corpus, "reading for BPE") as bar:
            for doc in corpus.documents():
                bar.update(doc.progress)
                if not _usable(doc, skip_bad_files, None):
                    continue
                where = plan.part(doc.identity)
                if where != part:
                    if part == "tokenizer" and where == "train" and stats["documents"] == 0 and doc.stream is None:
                        score = tokenizer_score(plan.seed, doc.identity)
                        if best is None or score < best[0]:
                            best = (score, doc.identity, doc.text)
                    continue
                # A huge file arrives in safe parts (see chunking); if it turns out unreadable part-way and
                # is skipped, the parts already seen stay in the BPE statistics (harmless: not held-out text).
                parts = [doc.text] if doc.stream is None else safe_parts(doc.stream(), any_boundary=False)
                try:
                    for i, text in enumerate(parts):
                        size = len(text.encode("utf-8"))
                        if stats["bytes"] + size > max_bytes and stats["bytes"] > 0:
                            stats["capped"] = True
                            return
                        stats["bytes"] += size
                        stats["documents"] += i == 0  # documents the trainer saw (some only in part)
                        yield text
                except DocumentProblem as e:
                    if not skip_bad_files:
                        raise TokenboundError(f"{e} (use --skip-bad-files to skip such documents)") from None
        if stats["documents"] == 0 and best is not None:
            plan.forced = best[1]
            stats["bytes"] += len(best[2].encode("utf-8"))
            stats["documents"] = 1
            yield best[2]
    except TokenboundError as e:
        stats["error"] = e


def _make_tokenizer(corpus: Corpus, spec: str | None, *, plan: _Plan, fit: str | None,
                    tokenizer_fraction: float | None, eot: int | None, vocab_size: int | None, skip_bad_files: bool,
                    max_bytes: int) -> tuple[TextTokenizer | None, dict]:
    """The tokenizer, and the manifest fields that say what it was fitted on (``tokenizer_fit``, ``bpe``).
    Sets ``plan.tokenizer_fraction`` when a tokenizer split is used."""
    if fit is not None and fit not in TOKENIZER_FIT_MODES:
        raise TokenboundError(f"expected one of {', '.join(TOKENIZER_FIT_MODES)}", param="tokenizer_fit", value=fit)
    if corpus.pretokenized:
        if spec not in (None, "none"):
            raise TokenboundError("a tokens: corpus is already tokenized; omit --tokenizer",
                                  param="tokenizer", value=spec)
        _only_for_bpe(fit, tokenizer_fraction, "a tokens: corpus")
        return None, {"tokenizer_fit": {"mode": "pretokenized"}}
    if spec in (None, "none"):
        raise TokenboundError("required for a text corpus (byte, bpe:N, hf:PATH or gguf:PATH)", param="tokenizer")
    kind = check_tokenizer_spec(spec)
    if kind in ("byte", "bpe") and eot is not None:
        raise TokenboundError(f"only for tokens: corpora and hf:/gguf: tokenizers, not {spec}", param="eot")
    if kind in ("byte", "bpe") and vocab_size is not None:
        raise TokenboundError(f"only for tokens: corpora and hf:/gguf: tokenizers, not {spec}", param="vocab_size")
    if kind != "bpe":
        _only_for_bpe(fit, tokenizer_fraction, f"--tokenizer {spec} (fixed in advance)")
        return build_tokenizer(spec, eot=eot, vocab_size=vocab_size), {"tokenizer_fit": {"mode": "fixed"}}
    n = parse_bpe_size(spec)
    fit = fit or "split"
    if fit == "split":
        plan.tokenizer_fraction = check_tokenizer_fraction(
            DEFAULT_TOKENIZER_FRACTION if tokenizer_fraction is None else tokenizer_fraction)
    elif tokenizer_fraction is not None:
        raise TokenboundError("only with --tokenizer-fit split", param="tokenizer_fraction")
    part = "tokenizer" if fit == "split" else "train"
    stats = {"bytes": 0, "documents": 0, "capped": False}
    tok = train_bpe(_bpe_training_texts(corpus, plan, part, max_bytes, skip_bad_files, stats), n, spec)
    if "error" in stats:
        raise stats["error"]
    if stats["documents"] == 0:
        raise TokenboundError(f"no non-empty training documents to train {spec} on", param="corpus", value=corpus.spec)
    bpe = {"train_max_bytes": max_bytes, "train_bytes": stats["bytes"], "train_documents": stats["documents"],
           "capped": stats["capped"], "tokenizer_ids": tok.num_ids,
           "trained_on": ("the tokenizer split only (in neither the training nor the held-out store)"
                          if fit == "split" else "training documents only (held-out excluded)")
                         + ", in corpus order, up to train_max_bytes of UTF-8 text"}
    if fit == "split":
        tok_fit = {"mode": "tokenizer-split", "fraction": plan.tokenizer_fraction, "seed": plan.seed,
                   "rule": TOKENIZER_SPLIT_RULE, "fallback_identity": plan.forced}
    else:
        code = bpe_code_length(tok)
        tok_fit = {"mode": "train-charged", "code_bits": code["bits"], "merges": code["merges"], "code": BPE_CODE}
    return tok, {"bpe": bpe, "tokenizer_fit": tok_fit}


def _only_for_bpe(fit: str | None, fraction: float | None, what: str) -> None:
    if fit is not None:
        raise TokenboundError(f"only for bpe:N tokenizers, not {what}", param="tokenizer_fit")
    if fraction is not None:
        raise TokenboundError(f"only for bpe:N tokenizers, not {what}", param="tokenizer_fraction")


def _encode(tok: TextTokenizer, texts: list[str]) -> tuple[list[np.ndarray], list[bool]]:
    """Encode a batch; for HF tokenizers also check decode(encode(text)) == text per document."""
    ids = tok.encode_batch(texts)
    if isinstance(tok, HFTokenizer):
        decoded = tok.decode_batch([a.tolist() for a in ids])
        return ids, [d != t for d, t in zip(decoded, texts)]
    return ids, [False] * len(texts)


def _write_documents(corpus: Corpus, tok: TextTokenizer | None, train: StoreWriter, val: StoreWriter | None,
                     plan: _Plan, skip_bad_files: bool, tally: _Tally) -> None:
    pending: deque[tuple[list[int], list[bool], Future]] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            sizes, held, fut = pending.popleft()
            ids, mismatched = fut.result()
            for part, writer in (("train", train), ("val", val)):
                pick = [i for i, h in enumerate(held) if h == (part == "val")]
                if pick:
                    writer.add_documents([ids[i] for i in pick], sum(sizes[i] for i in pick))
                    tally.roundtrip_mismatches[part] += sum(mismatched[i] for i in pick)

    def flush(docs: list[Document], sizes: list[int], held: list[bool]) -> None:
        if not docs:
            return
        if tok is None:
            done: Future = Future()
            done.set_result(([d.ids for d in docs], [False] * len(docs)))
        else:
            done = pool.submit(_encode, tok, [d.text for d in docs])
        pending.append((sizes, held, done))
        drain(limit=1)  # keep one batch encoding while the next one is read

    with ThreadPoolExecutor(max_workers=1) as pool, _progress(corpus, "prepare") as bar:
        docs, sizes, held, batch_bytes = [], [], [], 0
        for doc in corpus.documents():
            bar.update(doc.progress)
            tally.documents += 1
            if doc.stream is not None:  # a huge file: written in parts, after everything before it
                flush(docs, sizes, held)
                docs, sizes, held, batch_bytes = [], [], [], 0
                drain(limit=0)
                part = plan.part(doc.identity)
                if part == "tokenizer":
                    _skip_streamed(doc, skip_bad_files, tally)
                else:
                    _write_streamed(doc, tok, train if part == "train" else val, part, skip_bad_files, tally)
                continue
            content = doc.text.encode("utf-8") if doc.text is not None else \
                doc.ids.astype("<i8").tobytes() if doc.ids is not None else UNREADABLE
            tally.digest.update(f"{doc.identity}\0{hashlib.sha256(content).hexdigest()}\n".encode())
            if not _usable(doc, skip_bad_files, tally):
                continue
            part = plan.part(doc.identity)
            if part == "tokenizer":  # fitted the tokenizer; stored in neither store
                tally.tokenizer_document(doc.identity, len(content))
                continue
            docs.append(doc)
            sizes.append(len(content) if doc.text is not None else 0)  # num_bytes counts text only
            held.append(part == "val")
            batch_bytes += len(content)
            if batch_bytes >= BATCH_BYTES or len(docs) >= BATCH_DOCS:
                flush(docs, sizes, held)
                docs, sizes, held, batch_bytes = [], [], [], 0
        flush(docs, sizes, held)
        drain(limit=0)


def _skip_streamed(doc: Document, skip_bad_files: bool, tally: _Tally) -> None:
    """Read one huge tokenizer-split document through (for the corpus hash and the split's record) without
    storing it."""
    sha, size = hashlib.sha256(), 0
    try:
        for piece in doc.stream():
            data = piece.encode("utf-8")
            sha.update(data)
            size += len(data)
    except DocumentProblem as e:
        tally.digest.update(f"{doc.identity}\0{hashlib.sha256(UNREADABLE).hexdigest()}\n".encode())
        _usable(Document(doc.identity, problem=str(e)), skip_bad_files, tally)  # raises unless skipping
        return
    tally.digest.update(f"{doc.identity}\0{sha.hexdigest()}\n".encode())
    if size == 0:
        tally.empty += 1
        return
    tally.tokenizer_document(doc.identity, size)


def _write_streamed(doc: Document, tok: TextTokenizer, writer: StoreWriter, part: str, skip_bad_files: bool,
                    tally: _Tally) -> None:
    """Encode and write one huge document in parts (bounded memory, parts encoded in parallel). Byte and
    BPE ids are cut-invariant at safe boundaries; other tokenizers get the whole text at once."""
    sha = hashlib.sha256()
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
                writer.add_piece(np.concatenate(ids), sum(map(len, data)))
                mismatched |= any(bad)
                group = []
    except DocumentProblem as e:
        writer.discard_document()
        tally.digest.update(f"{doc.identity}\0{hashlib.sha256(UNREADABLE).hexdigest()}\n".encode())
        _usable(Document(doc.identity, problem=str(e)), skip_bad_files, tally)  # raises unless skipping
        return
    tally.digest.update(f"{doc.identity}\0{sha.hexdigest()}\n".encode())
    if writer.open_document_tokens == 0:
        writer.discard_document()
        tally.empty += 1
        return
    writer.close_document()
    tally.roundtrip_mismatches[part] += int(mismatched)


def prepare(corpus: str, tokenizer: str | None, out: Path, *, val_fraction: float = 0.0, seed: int = 0,
            glob: str | None = None, text_field: str = "text", vocab_size: int | None = None,
            eot: int | None = None, force: bool = False, skip_bad_files: bool = False, include_tests: bool = False,
            bpe_train_max_bytes: int = BPE_TRAIN_MAX_BYTES, tokenizer_fit: str | None = None,
            tokenizer_fraction: float | None = None) -> tuple[TokenStore, TokenStore | None]:
    """Tokenize `corpus` with `tokenizer` into a TokenStore at `out`; with `val_fraction` > 0 the held-out
    documents go to `out/val` (a second TokenStore, possibly empty). Prints nothing; returns the stores.

    A `bpe:N` tokenizer is fitted (`tokenizer_fit`, docs/data.md) on the tokenizer split ("split", the
    default: `tokenizer_fraction` of the documents, default 5 %, chosen by a seeded hash of their identity and
    stored in neither store) or on the training documents ("train-charged": its code length is recorded and
    `bound` charges it). The manifest's ``tokenizer_fit`` records which.

    Invariants: every stored document is non-empty and followed by eot; decoding a document's ids gives
    back its text exactly (byte/bpe); train, val and the tokenizer split hold disjoint documents and together
    all usable ones.
    """
    out = Path(out)
    val_fraction = check_val_fraction(val_fraction)
    if out.exists() and not force:
        raise TokenboundError("already exists (use --force to overwrite)", param="out", value=out)
    src = open_corpus(corpus, glob=glob, text_field=text_field, vocab_size=vocab_size, eot=eot,
                      include_tests=include_tests, exclude=out)
    # The stdlib ships deliberately undecodable test fixtures: they are skipped and counted, not the user's fault.
    skip_bad_files = skip_bad_files or src.describe().get("kind") == "stdlib"
    plan = _Plan(seed, val_fraction)
    tok, tok_extra = _make_tokenizer(src, tokenizer, plan=plan, fit=tokenizer_fit,
                                     tokenizer_fraction=tokenizer_fraction, eot=eot, vocab_size=vocab_size,
                                     skip_bad_files=skip_bad_files, max_bytes=bpe_train_max_bytes)
    vocab = tok.vocab_size if tok else src.vocab_size
    eot_id = tok.eot if tok else src.eot
    tally = _Tally()
    with atomic_output_dir(out, force=force) as tmp:
        train = StoreWriter(tmp, vocab, eot_id)
        val = StoreWriter(tmp / "val", vocab, eot_id) if val_fraction > 0 else None
        try:
            _write_documents(src, tok, train, val, plan, skip_bad_files, tally)
        finally:
            for w in (train, val):
                if w is not None:
                    w.close()
        if train.num_documents == 0:
            what = ("all non-empty documents were held out or fitted the tokenizer (try --tokenizer-fit "
                    "train-charged)" if (val and val.num_documents) or tally.tokenizer_documents
                    else "no non-empty documents")
            raise TokenboundError(f"empty training store ({what})", param="corpus", value=corpus)
        source = {**src.describe(), "sha256": tally.digest.hexdigest(), "documents": tally.documents,
                  "skipped_empty_documents": tally.empty, "skipped_bad_documents": tally.bad,
                  "bad_document_examples": tally.bad_examples, "skip_bad_files": skip_bad_files}
        tok_json = tok.to_json() if tok else None
        if tok_extra["tokenizer_fit"]["mode"] == "tokenizer-split":
            tok_extra["tokenizer_fit"].update(documents=tally.tokenizer_documents, bytes=tally.tokenizer_bytes,
                                              identities_sha256=tally.tokenizer_identities.hexdigest())
        for part, writer in (("train", train), ("val", val)):
            if writer is None:
                continue
            extra = {"split": {"part": part, "val_fraction": val_fraction, "seed": seed, "rule": SPLIT_RULE},
                     "tokenizer_sha256": sha256_bytes(tok_json.encode()) if tok_json else None, **tok_extra}
            if isinstance(tok, HFTokenizer):
                extra["roundtrip_mismatched_documents"] = tally.roundtrip_mismatches[part]
            writer.finish(tokenizer_spec=tok.spec if tok else None, tokenizer_json=tok_json, source=source,
                          count_bytes=tok is not None, extra=extra)
    train_store = TokenStore.open(out)
    return train_store, (train_store.val if val_fraction > 0 else None)


__all__ = ["prepare", "BPE_TRAIN_MAX_BYTES"]
