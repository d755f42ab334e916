"""`tokenbound markov`: fit a k-th order Markov chain on a TokenStore and save it with its real code."""
from __future__ import annotations

import argparse
import json

HELP = "fit and save a k-th order Markov-chain model (doc context rule) with its prefix-free code"
EXAMPLE = "tokenbound markov --data data/stdlib --order 2 --out runs/markov2"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="TokenStore to fit on (its whole stream)")
    p.add_argument("--order", required=True, type=int, metavar="K", help="context length k (0 = unigram)")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument("--smoothing", default="wb", metavar="SPEC",
                   help="wb (interpolated Witten-Bell, default) or add:BETA (additive); fixed before fitting")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args: argparse.Namespace) -> int:
    from ..models.markov_fit import fit_store

    summary = fit_store(args.data, args.order, args.out, smoothing=args.smoothing, force=args.force)
    print(json.dumps(summary, indent=2))
    return 0
