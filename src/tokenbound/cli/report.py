"""CLI for `tokenbound report` (see report/)."""
from __future__ import annotations

from pathlib import Path

HELP = "a Markdown table and PNG plots over certificates"
EXAMPLE = "tokenbound report out/certs/ --out out/report.md"


def add_arguments(p) -> None:
    p.add_argument("certificates", nargs="+", type=Path, help="certificate files or directories holding them")
    p.add_argument("--out", type=Path, required=True, help="the Markdown file to write (plots go beside it)")
    p.add_argument("--title", default="tokenbound report")


def run(args) -> int:
    from ..report import write_report

    print(write_report(args.certificates, args.out, title=args.title))
    return 0
