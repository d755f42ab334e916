"""CLI for `tokenbound verify` (see evaluate/verify.py)."""
from __future__ import annotations

import sys
from pathlib import Path

HELP = "re-check a certificate: statistics, every bound, the store's and the model's hashes (exit 0 only if all match)"
EXAMPLE = "tokenbound verify out/cert.json"


def add_arguments(p) -> None:
    p.add_argument("certificate", type=Path, help="a certificate written by `tokenbound bound`")
    p.add_argument("--skip-model", action="store_true", help="do not re-decode the model (faster)")
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    from ..evaluate.verify import verify

    problems = verify(args.certificate, check_model=not args.skip_model, device=args.device)
    if problems:
        print(f"{args.certificate}: FAILED ({len(problems)} problem(s))", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"{args.certificate}: OK (statistics, bounds, store and model all re-check)")
    return 0
