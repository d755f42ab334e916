"""Recompute certificates from their inputs and statistics and check the files come out byte for byte the same.

For every certificate CERT.json in the folders given (read only): its statistics are loaded (the sha256 the
certificate records is checked), ``certify(stats, Certificate.from_json(CERT).inputs, ...)`` is rerun with its
caller records, written the way `tokenbound bound` writes a certificate (artifacts.write_json of
``Certificate.to_json()``) into a temporary folder, and compared with the original: md5 of both, and whether
the bytes are identical. Exits 1 if any differs. Progress goes to stderr, one line per certificate.

Usage:  python benchmarks/check_certificates_identical.py demo_out/certificates [MORE_FOLDERS_OR_FILES ...]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def rewrite(cert_path: Path, out: Path) -> None:
    """Recompute `cert_path` from its recorded inputs and statistics and write it to `out` as `bound` would."""
    from tokenbound.artifacts import read_json, sha256_file, write_json
    from tokenbound.bounds.certificate import certify
    from tokenbound.bounds.schema import Certificate
    from tokenbound.evaluate.bound import load_stats, stats_path

    raw = read_json(cert_path, "certificate")
    for key in ("stats", "document_stats"):
        if raw.get(key) is not None and sha256_file(stats_path(raw, cert_path, key)) != raw[key]["sha256"]:
            raise SystemExit(f"{cert_path}: its {key} file does not match the sha256 it records")
    old = Certificate.from_json(raw)
    new = certify(load_stats(raw, cert_path), old.inputs, document_stats=load_stats(raw, cert_path, "document_stats"),
                  model=old.model, data=old.data, provenance=old.provenance)
    write_json(out, replace(new, extra=old.extra).to_json())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="certificate files or folders holding them")
    args = ap.parse_args()
    certs = sorted(p for q in args.paths for p in ([q] if q.is_file() else q.glob("*.json")))
    if not certs:
        print("no certificates found", file=sys.stderr)
        return 2
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, cert in enumerate(certs, 1):
            print(f"[{i}/{len(certs)}] {cert}", file=sys.stderr, flush=True)
            out = Path(tmp) / f"{i}-{cert.name}"
            rewrite(cert, out)
            same = cert.read_bytes() == out.read_bytes()
            bad += not same
            print(f"{cert}  original {md5(cert)}  recomputed {md5(out)}  {'identical' if same else 'DIFFERENT'}")
    print(f"{len(certs) - bad} of {len(certs)} certificates recompute byte for byte")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
