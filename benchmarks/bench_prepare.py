"""`prepare` throughput and peak memory, the old code (a git ref) and this checkout side by side.

    python benchmarks/bench_prepare.py [--corpus stdlib] [--vocab 8192] [--old-ref main] [--val-fraction 0.05]
                                       [--repeat 1]
    python benchmarks/bench_prepare.py --corpus python --old-ref ''     # every installed .py file (~250 MB)

A `bpe:VOCAB` tokenizer is fitted once on `--tokenizer-corpus` (default stdlib-tests, at most 32 MiB of it) and
given to both runs as ``hf:tokenizer.json``, so that the runs time reading, encoding, the round-trip check and
writing, not BPE training. Each run is a fresh Python process (its own peak RSS) calling
``tokenbound.data.prepare.prepare``; its progress lines are shown as it goes. Printed per run: wall seconds of
``prepare``, CPU seconds (all its threads), MB of text per second and per CPU second, peak RSS, tokens; then
whether the two stores are identical (tokens.bin and doc_offsets.npy of train and val). With ``--repeat R`` the
runs alternate old, new, old, ... and the table shows each code's fastest wall and smallest CPU time. The old ref is read with
``git archive`` (nothing is checked out); ``--old-ref ''`` skips it, as does a corpus spec the old code lacks.
The machine's load average is printed before and after: on a shared machine compare MB per CPU second.
Goal: >= 5 MB/s on 2 cores.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIT_MAX_BYTES = 32 << 20

RUNNER = r"""
import json, resource, sys, time
from pathlib import Path
from tokenbound.data.prepare import prepare
corpus, tokenizer, out, val_fraction = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
c0, t0 = time.process_time(), time.perf_counter()
train, val = prepare(corpus, tokenizer, out, val_fraction=val_fraction)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
stores = [s for s in (train, val) if s is not None]
print(json.dumps({"seconds": seconds, "cpu": cpu, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "bytes": sum(s.num_bytes for s in stores), "tokens": sum(s.num_tokens for s in stores),
                  "documents": sum(s.num_documents for s in stores), "source": train.manifest["source"]}))
"""


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def fit_tokenizer(spec: str, vocab: int, out: Path) -> Path:
    sys.path.insert(0, str(REPO / "src"))
    from tokenbound.data.corpus import open_corpus
    from tokenbound.data.tokenizers import train_bpe

    def texts():
        used = 0
        for doc in open_corpus(spec).documents():
            if doc.text:
                used += len(doc.text)
                if used > FIT_MAX_BYTES:
                    return
                yield doc.text

    t0 = time.perf_counter()
    tok = train_bpe(texts(), vocab, f"bpe:{vocab}")
    path = out / "tokenizer.json"
    path.write_text(tok.to_json())
    print(f"fitted bpe:{vocab} on {spec} in {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    return path


def old_source(ref: str, into: Path) -> Path | None:
    try:
        data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True,
                              capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"old ref {ref!r}: cannot read it with git archive ({e}); skipping the old run", flush=True)
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run(label: str, src: Path, corpus: str, tokenizer: Path, out: Path, val_fraction: float) -> dict | None:
    print(f"{label}: prepare --corpus {corpus} (code from {src}) ...", flush=True)
    env = {**os.environ, "PYTHONPATH": str(src), "TOKENBOUND_PROGRESS_SECONDS": "10"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, corpus, f"hf:{tokenizer}", str(out), str(val_fraction)],
                          env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"{label}: failed (exit {proc.returncode})", flush=True)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    mb = result["bytes"] / 1e6
    print(f"{label}: {result['seconds']:.1f} s, CPU {result['cpu']:.1f} s, {mb / result['seconds']:.2f} MB/s, "
          f"{mb / result['cpu']:.2f} MB per CPU s, peak RSS {result['maxrss_kb'] / 1024:.0f} MiB, {load()}",
          flush=True)
    return result


def same_stores(a: Path, b: Path) -> bool:
    names = ["tokens.bin", "doc_offsets.npy", "val/tokens.bin", "val/doc_offsets.npy"]
    return all((a / n).exists() == (b / n).exists() and (not (a / n).exists()
                                                         or (a / n).read_bytes() == (b / n).read_bytes())
               for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="stdlib", help="corpus spec (default stdlib; python: every installed .py)")
    ap.add_argument("--tokenizer-corpus", default="stdlib-tests", help="fit the BPE on this (default stdlib-tests)")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--old-ref", default="main", help="git ref of the old code ('' to skip it; default main)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each code, alternating (default 1)")
    args = ap.parse_args()

    print(f"cpus {os.cpu_count()}, {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        tokenizer = fit_tokenizer(args.tokenizer_corpus, args.vocab, tmp)
        results = {}
        old_src = old_source(args.old_ref, tmp / "old") if args.old_ref else None
        if old_src is not None and args.corpus in ("python", "stdlib-tests") \
                and f'"{args.corpus}"' not in (old_src / "tokenbound/data/corpus.py").read_text():
            print(f"old code has no corpus spec {args.corpus}; skipping the old run", flush=True)
            old_src = None
        codes = ([("old", old_src)] if old_src is not None else []) + [("new", REPO / "src")]
        for i in range(max(1, args.repeat)):
            for label, src in codes:
                out = tmp / f"{label}_store"
                if out.exists():
                    shutil.rmtree(out)
                r = run(f"{label} {i + 1}/{args.repeat}" if args.repeat > 1 else label, src, args.corpus, tokenizer,
                        out, args.val_fraction)
                best = results.get(label)
                if r is not None and best is not None:  # the fastest wall and the smallest CPU time of the runs
                    r = {**r, "seconds": min(r["seconds"], best["seconds"]), "cpu": min(r["cpu"], best["cpu"]),
                         "maxrss_kb": max(r["maxrss_kb"], best["maxrss_kb"])}
                results[label] = r if r is not None else best

        print(f"\n{'code':<5} {'wall s':>7} {'CPU s':>7} {'MB':>7} {'MB/s':>6} {'MB/CPU s':>9} {'peak RSS':>9} "
              f"{'tokens':>12}")
        for label, r in results.items():
            if r is None:
                continue
            mb = r["bytes"] / 1e6
            print(f"{label:<5} {r['seconds']:7.1f} {r['cpu']:7.1f} {mb:7.1f} {mb / r['seconds']:6.2f} "
                  f"{mb / r['cpu']:9.2f} {r['maxrss_kb'] / 1024:7.0f} M {r['tokens']:12,}")
        if results.get("old") and results.get("new"):
            o, n = results["old"], results["new"]
            print(f"new/old: {o['seconds'] / n['seconds']:.2f}x wall, {o['cpu'] / n['cpu']:.2f}x CPU; identical "
                  f"stores: {'yes' if same_stores(tmp / 'old_store', tmp / 'new_store') else 'NO'}")
        src = (results.get("new") or {}).get("source") or {}
        if src.get("kind") == "python":
            listed = src["file_list"]
            print(f"python corpus: {listed['files']:,} files, {listed['bytes'] / 1e6:.1f} MB, "
                  f"{src['duplicate_files']:,} duplicates dropped ({src['duplicate_bytes'] / 1e6:.1f} MB), "
                  f"{len(src['roots'])} roots: {', '.join(r['id'] for r in src['roots'])}")
        print(load(), flush=True)


if __name__ == "__main__":
    main()
