"""`tokenbound prepare`: tokenize a corpus into a TokenStore (logic in tokenbound.data.prepare)."""
from __future__ import annotations

from .argtypes import finite_float

HELP = "tokenize a corpus into a TokenStore (with an optional held-out val/ store)"
EXAMPLE = "tokenbound prepare --corpus stdlib --tokenizer bpe:8192 --out data/stdlib --val-fraction 0.05"


def add_arguments(parser) -> None:
    parser.add_argument("--corpus", default="stdlib", metavar="SPEC",
                        help="stdlib | stdlib+tests | stdlib-tests | python | FILE | DIR | FILE.jsonl | FILE.parquet | "
                             "tokens:FILE.npy (default: stdlib). stdlib: the standard library's .py files without "
                             "its test suites; stdlib+tests: with them; stdlib-tests: only them; python: every "
                             ".py file installed for this interpreter (the standard library with its tests, then "
                             "each site-packages/dist-packages folder of sysconfig and sys.path), files with the "
                             "same content read once, all listed in the store's corpus_files.jsonl (docs/data.md)")
    parser.add_argument("--tokenizer", metavar="SPEC",
                        help="byte | bpe:N | hf:PATH | gguf:PATH (required for text corpora; omit for tokens:)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output TokenStore directory")
    parser.add_argument("--val-fraction", type=finite_float, default=0.0, metavar="F",
                        help="fraction of whole documents held out into DIR/val, chosen by a seeded hash of "
                             "each document's identity (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out and tokenizer splits (default 0)")
    parser.add_argument("--tokenizer-fit", choices=("split", "train-charged"), default=None,
                        help="bpe:N only: fit the BPE on a separate tokenizer split of documents kept out of both "
                             "stores (split, the default), or on the training documents, recording the "
                             "tokenizer's code length, which bound then charges (train-charged)")
    parser.add_argument("--tokenizer-corpus", metavar="SPEC",
                        help="bpe:N only: fit the BPE on this other corpus (a --corpus spec, e.g. stdlib-tests for "
                             "--corpus stdlib) instead of a tokenizer split, so every document is stored; refused "
                             "if the two corpora read a common file, and its documents with the same content as a "
                             "stored one are left out of the fit")
    parser.add_argument("--tokenizer-fraction", type=finite_float, default=None, metavar="F",
                        help="with --tokenizer-fit split: fraction of the non-held-out documents in the tokenizer "
                             "split, chosen by a seeded hash of each document's identity (default 0.05)")
    parser.add_argument("--glob", metavar="PATTERN",
                        help="files to read from a directory corpus (default **/*) or stdlib (default **/*.py)")
    parser.add_argument("--text-field", default="text", metavar="NAME",
                        help="JSON field / Parquet column holding the text (default text)")
    parser.add_argument("--vocab-size", type=int, metavar="V",
                        help="vocabulary size of a tokens: corpus (or a larger V for hf:/gguf:)")
    parser.add_argument("--eot", type=int, metavar="ID",
                        help="end-of-text id of a tokens: corpus (or an override for hf:/gguf:)")
    parser.add_argument("--include-tests", action="store_true", help="stdlib: include the test suites")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="skip (and count) undecodable documents instead of failing")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")


def run(args) -> int:
    import time

    from ..fmt import plural

    from ..data.prepare import prepare

    start = time.perf_counter()
    train, val = prepare(args.corpus, args.tokenizer, args.out, val_fraction=args.val_fraction, seed=args.seed,
                         glob=args.glob, text_field=args.text_field, vocab_size=args.vocab_size, eot=args.eot,
                         force=args.force, skip_bad_files=args.skip_bad_files, include_tests=args.include_tests,
                         tokenizer_fit=args.tokenizer_fit, tokenizer_fraction=args.tokenizer_fraction,
                         tokenizer_corpus=args.tokenizer_corpus)
    seconds = time.perf_counter() - start
    total = train.num_tokens + (val.num_tokens if val else 0)
    print(f"wrote {train.path}: {plural(train.num_tokens, 'token')}, {plural(train.num_documents, 'document')}, "
          f"vocab {train.vocab_size:,}, eot {train.eot}")
    if val is not None:
        print(f"held out {val.path}: {plural(val.num_tokens, 'token')}, {plural(val.num_documents, 'document')}")
    fit = train.manifest.get("tokenizer_fit") or {}
    if fit.get("mode") == "tokenizer-split":
        print(f"tokenizer {train.manifest['tokenizer']} fitted on the tokenizer split: {plural(fit['documents'], 'document')}, "
              f"{fit['bytes']:,} bytes, in neither store")
    elif fit.get("mode") == "tokenizer-corpus":
        shared = fit["disjoint"]["shared_content_left_out"]
        print(f"tokenizer {train.manifest['tokenizer']} fitted on --tokenizer-corpus {fit['corpus']['spec']}: "
              f"{plural(fit['documents'], 'document')}, {fit['bytes']:,} bytes, no file in common with the corpus"
              + (f"; {plural(shared, 'document')} with a stored document's content left out" if shared else ""))
    elif fit.get("mode") == "train-charged":
        print(f"tokenizer {train.manifest['tokenizer']} fitted on the training documents: code length "
              f"{fit['code_bits']:,} bits ({fit['merges']:,} merges), charged by bound")
    src = train.manifest["source"]
    if src.get("kind") == "python":
        listed = src["file_list"]
        print(f"read {plural(listed['files'], 'file')} ({listed['bytes']:,} bytes) from "
              f"{plural(len(src['roots']), 'folder')}, listed in {listed['file']}; "
              f"{plural(src['duplicate_files'], 'duplicate file')} ({src['duplicate_bytes']:,} bytes) read once")
    if src.get("skipped_empty_documents") or src.get("skipped_bad_documents"):
        bad = src["skipped_bad_documents"]
        print(f"skipped {src['skipped_empty_documents']:,} empty and {plural(bad, 'bad document')}")
    if src.get("skipped_binary_files") or src.get("skipped_directories"):
        dirs = src.get("skipped_directory_examples") or []
        more = ", ..." if src.get("skipped_directories", 0) > len(dirs) else ""
        print(f"skipped {plural(src.get('skipped_binary_files', 0), 'binary file')} and "
              f"{plural(src.get('skipped_directories', 0), 'folder')} of version control, caches or virtual "
              f"environments" + (f" ({', '.join(dirs)}{more})" if dirs else "") + "; listed in the manifest's source")
    bpt = f", {train.mean_bytes_per_token:.3f} bytes/token" if train.mean_bytes_per_token else ""
    print(f"{seconds:.1f} s, {total / max(seconds, 1e-9):,.0f} tokens/s{bpt}")
    return 0
