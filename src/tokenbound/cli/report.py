"""CLI for `tokenbound report` (see report/)."""
from __future__ import annotations

import sys
from pathlib import Path

HELP = "a Markdown table and PNG plots over certificates, each re-checked from its statistics"
EXAMPLE = "tokenbound report out/certs/ --out out/report.md"


def add_arguments(p) -> None:
    p.add_argument("certificates", nargs="+", type=Path, help="certificate files or directories holding them")
    p.add_argument("--out", type=Path, required=True, help="the Markdown file to write (plots go beside it)")
    p.add_argument("--title", default="tokenbound report", help="the report's heading (default: tokenbound report)")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2, nothing written) if any certificate's bounds do not recompute from its "
                        "statistics; by default such rows are marked FAILED and show the recomputed numbers")


def run(args) -> int:
    from ..report import write_report

    text = write_report(args.certificates, args.out, title=args.title, strict=args.strict)
    print(text)
    failed = [line for line in text.splitlines() if line.startswith("|") and "| FAILED:" in line]
    if failed:
        print(f"report: {len(failed)} certificate(s) FAILED the re-check; see the checks column of {args.out}",
              file=sys.stderr)
    return 0
