"""CLI for `tokenbound experiment NAME` (see tokenbound/experiments/)."""
from __future__ import annotations

from pathlib import Path

HELP = "run one of the paper's studies (markov-vs-context, compression-sweep, memorization, pretrained-ptq, scaling)"
EXAMPLE = "tokenbound experiment markov-vs-context --scale small --out exp/markov"


def add_arguments(p) -> None:
    from ..experiments import EXPERIMENTS, SCALES

    p.add_argument("name", metavar="NAME", choices=list(EXPERIMENTS), help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--scale", choices=SCALES, default="small",
                   help="tiny (seconds, for tests), small (<= 15 min on a 2-core CPU; default), paper (GPU)")
    p.add_argument("--out", type=Path, required=True, help="output directory; rerunning resumes")
    p.add_argument("--data", type=Path, default=None,
                   help="TokenStore to use (default: data/stdlib if present, else prepared into OUT/data; "
                        "pretrained-ptq: a store in the model's own tokenizer, with a val/ split)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (recorded in results.json)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def run(args) -> int:
    from ..experiments import run_experiment

    results = run_experiment(args.name, args.out, scale=args.scale, seed=args.seed, data=args.data,
                             device=args.device)
    print((Path(args.out) / "table.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'}  verified: {results['verified']}")
    return 0 if results["verified"] else 1
