"""Fitting the tokenizer of `prepare` (docs/data.md, "Tokenizer specs"): a `bpe:N` is fitted on the tokenizer
split, on the training documents (charged), or on a separate tokenizer corpus that is proven disjoint from the
stored one (data/tokenizer_corpus.py); other tokenizers are fixed in advance.
"""
from __future__ import annotations

from typing import Iterator

from ..errors import TokenboundError
from .chunking import safe_parts
from .corpus import Corpus, DocumentProblem
from .split import (DEFAULT_TOKENIZER_FRACTION, TOKENIZER_FIT_MODES, TOKENIZER_SPLIT_RULE, Plan,
                    check_tokenizer_fraction, tokenizer_score)
from .tally import corpus_progress, usable
from .tokenizer_corpus import fit_on_corpus
from .tokenizers import (BPE_CODE, TextTokenizer, bpe_code_length, build_tokenizer, check_tokenizer_spec,
                         parse_bpe_size, train_bpe)

BPE_TRAIN_MAX_BYTES = 1 << 27   # 128 MiB of training text fed to the BPE trainer at most


def _bpe_training_texts(corpus: Corpus, plan: Plan, part: str, max_bytes: int, skip_bad_files: bool,
                       stats: dict) -> Iterator[str]:
    """The text of the documents of `part` ("tokenizer" or "train") in corpus order until `max_bytes`. With the
    tokenizer split and no document in it, the training document with the smallest tokenizer number becomes its
    only document (``plan.forced``). Errors are stored in `stats["error"]` and end the iteration, because an
    exception raised inside the Rust trainer would lose its type."""
    best: tuple[float, str, str] | None = None
    try:
        with corpus_progress(corpus, "reading for BPE") as bar:
            for doc in corpus.documents():
                bar.update(doc.progress)
                if not usable(doc, skip_bad_files, None):
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


def make_tokenizer(corpus: Corpus, spec: str | None, *, plan: Plan, fit: str | None,
                   tokenizer_fraction: float | None, eot: int | None, vocab_size: int | None, skip_bad_files: bool,
                   max_bytes: int, tokenizer_corpus: Corpus | None = None) -> tuple[TextTokenizer | None, dict]:
    """The tokenizer, and the manifest fields that say what it was fitted on (``tokenizer_fit``, ``bpe``).
    Sets ``plan.tokenizer_fraction`` when a tokenizer split is used."""
    if fit is not None and fit not in TOKENIZER_FIT_MODES:
        raise TokenboundError(f"expected one of {', '.join(TOKENIZER_FIT_MODES)}", param="tokenizer_fit", value=fit)
    if tokenizer_corpus is not None and (spec is None or not spec.startswith("bpe:") or corpus.pretokenized):
        raise TokenboundError("only for fitting a bpe:N tokenizer to a text corpus, not "
                              f"--tokenizer {spec} on --corpus {corpus.spec}", param="tokenizer_corpus")
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
    if tokenizer_corpus is not None:
        if fit is not None or tokenizer_fraction is not None:
            raise TokenboundError("the BPE is fitted on it; omit "
                                  "--tokenizer-fit and --tokenizer-fraction",
                                  param="tokenizer_corpus", value=tokenizer_corpus.spec)
        return fit_on_corpus(corpus, tokenizer_corpus, n, spec, skip_bad_files=skip_bad_files, max_bytes=max_bytes)
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
