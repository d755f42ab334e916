"""CLI for `tokenbound verify` (see evaluate/verify.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from .argtypes import device, finite_float

HELP = ("re-check a certificate: statistics, every bound, the store's and the model's hashes, the message length "
        "measured from the bitstream, and a random subset of draws re-scored with the model (exit 0 only if all "
        "match)")
EXAMPLE = "tokenbound verify out/cert.json"


def add_arguments(p) -> None:
    p.add_argument("certificate", type=Path, help="a certificate written by `tokenbound bound`")
    p.add_argument("--skip-model", action="store_true",
                   help="do not re-decode, re-measure or re-score the model (faster; the output says so)")
    p.add_argument("--rescore", default="32", metavar="N|all",
                   help="re-score N draws of the statistics, chosen with fresh OS randomness, with the model and "
                        "compare prob, rank and entropy with the stored ones (default 32; 'all'; 0 = skip, "
                        "reported as not re-scored)")
    p.add_argument("--rescore-tol", type=finite_float, default=None, metavar="BITS",
                   help="largest accepted difference of log2 p and of the entropy, in bits (default 1e-4: float32 "
                        "rounding on the device and dtype that scored: re-batching moved a tiny GPT's by 1.3e-6 bits; "
                        "another device or dtype needs a larger value; docs/scoring.md)")
    p.add_argument("--rescore-seed", type=int, default=None, metavar="S",
                   help="choose the re-scored draws with this seed (to reproduce a failure; default: fresh "
                        "OS randomness, printed)")
    p.add_argument("--device", type=device, default="cpu",
                   help="cpu | cuda | cuda:N: where the model is re-decoded and draws re-scored (default cpu; another "
                        "device than the one that scored may need a larger --rescore-tol)")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="the certified TokenStore, if it moved (default: the path recorded relative to CERT)")
    p.add_argument("--model", type=Path, metavar="PATH",
                   help="the certified model, if it moved (default: the path recorded relative to CERT)")


def run(args) -> int:
    from ..evaluate.rescore import RESCORE_TOL_BITS, check_tolerance, parse_rescore
    from ..evaluate.verify import verify

    rescore = parse_rescore(args.rescore)
    tol = RESCORE_TOL_BITS if args.rescore_tol is None else check_tolerance(args.rescore_tol)
    report: list[str] = []
    problems = verify(args.certificate, check_model=not args.skip_model, device=args.device, data=args.data,
                      model=args.model, rescore=rescore, rescore_seed=args.rescore_seed, rescore_tol=tol,
                      report=report)
    for line in report:
        print(f"  {line}")
    if problems:
        print(f"{args.certificate}: FAILED ({len(problems)} problem(s))", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if args.skip_model:
        what = "statistics, bounds and store re-check; model NOT checked, draws NOT re-scored"
    elif rescore == 0:
        what = "statistics, bounds, store and model re-check; draws NOT re-scored"
    else:
        what = "statistics, bounds, store, model and re-scored draws all re-check"
    print(f"{args.certificate}: OK ({what})")
    return 0
