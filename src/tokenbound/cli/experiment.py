"""CLI for `tokenbound experiment NAME` (see tokenbound/experiments/)."""
from __future__ import annotations

from pathlib import Path

from .argtypes import device

HELP = ("run one of the paper's studies (markov-vs-context, compression-sweep, memorization, pretrained-ptq, scaling, "
        "chat-vs-base, downstream, frontier)")
EXAMPLE = "tokenbound experiment markov-vs-context --scale small --out exp/markov"


def add_arguments(p) -> None:
    from ..experiments import EXPERIMENTS, SCALES

    p.add_argument("name", metavar="NAME", choices=list(EXPERIMENTS), help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--scale", choices=SCALES, default="small",
                   help="tiny (seconds, for tests), small (<= 15 min on a 2-core CPU, frontier an hour; default), "
                        "paper (GPU)")
    p.add_argument("--out", type=Path, required=True, help="output directory; rerunning resumes")
    p.add_argument("--data", type=Path, default=None,
                   help="TokenStore to use (default: data/stdlib if present, else prepared into OUT/data; "
                        "pretrained-ptq: a store in the model's own tokenizer, with a val/ split)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (recorded in results.json)")
    p.add_argument("--device", type=device, default="cpu", help="cpu (default) or cuda")
    p.add_argument("--extra-bits", action="append", default=[], metavar="NAME=BITS",
                   help="prior bits added to every certificate of the study, itemised as NAME, for a choice of the "
                        "model made after looking at the training data (log2 K among K; repeatable; "
                        "docs/theory.md §12)")


def run(args) -> int:
    from ..bounds.budget import parse_extra_bits
    from ..experiments import run_experiment

    from ..artifacts import ensure_parent_dir
    from ..errors import TokenboundError

    if args.out.exists() and not args.out.is_dir():
        raise TokenboundError(f"--out {args.out}: is a file, not a directory")
    ensure_parent_dir(args.out, "out")  # a file in the way or no write access: one line naming --out
    results = run_experiment(args.name, args.out, scale=args.scale, seed=args.seed, data=args.data,
                             device=args.device, extra_bits=parse_extra_bits(args.extra_bits))
    print((Path(args.out) / "table.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'}  verified: {results['verified']}")
    return 0 if results["verified"] else 1
