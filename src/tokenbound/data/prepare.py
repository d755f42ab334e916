"""`tokenbound prepare`: corpus + tokenizer -> TokenStore (+ held-out `val/` store) (docs/design.md §4–§6).

Two streaming passes over the corpus at most (three with a tokenizer corpus, whose disjointness is checked):
1. (`bpe:N` only, data/fit.py) train the BPE on the *tokenizer split* (default; documents stored in neither
   store), with ``tokenizer_fit="train-charged"`` on the training documents, or on a separate tokenizer corpus
   (data/tokenizer_corpus.py), in corpus order, up to `bpe_train_max_bytes` of UTF-8 text (the cap bounds memory
   and time; it is recorded in the manifest).
2. Encode every document and append it, followed by eot, to the train or the val store according to
   `split.is_held_out` (tokenizer-split documents are only counted; data/encode.py, docs/data.md).
Everything is written inside `atomic_output_dir`: on any error nothing is left behind.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import atomic_output_dir, sha256_bytes
from ..errors import TokenboundError
from .corpus import open_corpus
from .encode import write_documents
from .fit import BPE_TRAIN_MAX_BYTES, make_tokenizer
from .installed import PythonCorpus, write_file_list
from .split import DUPLICATES_RULE, SPLIT_RULE, Plan, check_val_fraction
from .store import TokenStore
from .tally import Tally
from .tokenizer_corpus import SKIP_BAD_KINDS
from .tokenizers import HFTokenizer
from .writer import StoreWriter


def prepare(corpus: str, tokenizer: str | None, out: Path, *, val_fraction: float = 0.0, seed: int = 0,
            glob: str | None = None, text_field: str = "text", vocab_size: int | None = None,
            eot: int | None = None, force: bool = False, skip_bad_files: bool = False, include_tests: bool = False,
            bpe_train_max_bytes: int = BPE_TRAIN_MAX_BYTES, tokenizer_fit: str | None = None,
            tokenizer_fraction: float | None = None, tokenizer_corpus: str | None = None
            ) -> tuple[TokenStore, TokenStore | None]:
    """Tokenize `corpus` with `tokenizer` into a TokenStore at `out`; with `val_fraction` > 0 the held-out
    documents go to `out/val` (a second TokenStore, possibly empty). Prints nothing; returns the stores.

    A `bpe:N` tokenizer is fitted (`tokenizer_fit`, docs/data.md) on the tokenizer split ("split", the
    default: `tokenizer_fraction` of the documents, default 5 %, chosen by a seeded hash of their identity and
    stored in neither store) or on the training documents ("train-charged": its code length is recorded and
    `bound` charges it), or, given `tokenizer_corpus` (a corpus spec), on that corpus, checked disjoint from
    `corpus` (data/tokenizer_corpus.py; every document is then stored). The manifest's ``tokenizer_fit`` records
    which.

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
    skip_bad_files = skip_bad_files or src.describe().get("kind") in SKIP_BAD_KINDS
    tok_src = None
    if tokenizer_corpus is not None:
        try:
            tok_src = open_corpus(tokenizer_corpus, text_field=text_field, exclude=out)
        except TokenboundError as e:  # open_corpus names its `corpus`: here that is the other corpus
            if e.param != "corpus":
                raise
            raise TokenboundError(e.message, param="tokenizer_corpus", value=e.value) from None
    plan = Plan(seed, val_fraction)
    tok, tok_extra = make_tokenizer(src, tokenizer, plan=plan, fit=tokenizer_fit,
                                    tokenizer_fraction=tokenizer_fraction, eot=eot, vocab_size=vocab_size,
                                    skip_bad_files=skip_bad_files, max_bytes=bpe_train_max_bytes,
                                    tokenizer_corpus=tok_src)
    vocab = tok.vocab_size if tok else src.vocab_size
    eot_id = tok.eot if tok else src.eot
    tally = Tally()
    with atomic_output_dir(out, force=force) as tmp:
        train = StoreWriter(tmp, vocab, eot_id)
        val = StoreWriter(tmp / "val", vocab, eot_id) if val_fraction > 0 else None
        try:
            write_documents(src, tok, train, val, plan, skip_bad_files, tally)
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
        if isinstance(src, PythonCorpus):  # the files read, for reproducing the corpus from its manifest
            listed = {"file_list": write_file_list(train.directory, src.files)}
            if val is not None:
                write_file_list(val.directory, src.files)
            source.update(listed)
        tok_json = tok.to_json() if tok else None
        if tok_extra["tokenizer_fit"]["mode"] == "tokenizer-split":
            tok_extra["tokenizer_fit"].update(documents=tally.tokenizer_documents, bytes=tally.tokenizer_bytes,
                                              identities_sha256=tally.tokenizer_identities.hexdigest())
        for part, writer in (("train", train), ("val", val)):
            if writer is None:
                continue
            extra = {"split": {"part": part, "val_fraction": val_fraction, "seed": seed, "rule": SPLIT_RULE,
                               "duplicates_moved_to_train": tally.moved_to_train, "duplicates_rule": DUPLICATES_RULE},
                     "tokenizer_sha256": sha256_bytes(tok_json.encode()) if tok_json else None, **tok_extra}
            if isinstance(tok, HFTokenizer):
                extra["roundtrip_mismatched_documents"] = tally.roundtrip_mismatches[part]
            writer.finish(tokenizer_spec=tok.spec if tok else None, tokenizer_json=tok_json, source=source,
                          count_bytes=tok is not None, extra=extra)
    train_store = TokenStore.open(out)
    return train_store, (train_store.val if val_fraction > 0 else None)


__all__ = ["prepare", "BPE_TRAIN_MAX_BYTES"]
