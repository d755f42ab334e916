"""`tokenbound validate`: Monte Carlo coverage of the bounds on sources with a known next-token law."""
from __future__ import annotations

import argparse
import json

from ..evaluate.control import CONTROL_SPECS

HELP = "Monte Carlo validity check of the bounds on synthetic sources (JSON on stdout)"
EXAMPLE = "tokenbound validate --source markov:order=1,vocab=8 --trials 200 --tokens 10000 --order 1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="markov", metavar="SPEC",
                   help="markov:order=K,vocab=V,conc=C | hmm:states=S,vocab=V,conc=C | "
                        "docs:chains=J,vocab=V,len=L,conc=C | spiky:vocab=V,frac=F,eps=E (default: markov)")
    p.add_argument("--trials", type=int, default=100, metavar="T", help="number of independent trials")
    p.add_argument("--tokens", type=int, default=10_000, metavar="M", help="training tokens per trial")
    p.add_argument("--samples", type=int, default=2_000, metavar="N",
                   help="positions sampled uniformly with replacement (0 = every position once)")
    p.add_argument("--order", type=int, default=1, metavar="K", help="order of the fitted Markov model")
    p.add_argument("--smoothing", default="wb", metavar="SPEC", help="wb or add:BETA (the fitted model's)")
    p.add_argument("--method", default="azuma,variance_adaptive,broken", metavar="NAME[,NAME]",
                   help="methods to check: azuma, variance_adaptive, broken (deliberately invalid)")
    p.add_argument("--delta", type=float, default=0.05, metavar="D", help="confidence parameter of the bounds")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the source and every trial")
    p.add_argument("--subsample-ci", default="betting", choices=("betting", "best", "maurer_pontil", "hoeffding"),
                   help="confidence bound of the variance-adaptive method's subsampled sums (as in `bound`)")
    p.add_argument("--control-variate", default="markov:0", choices=CONTROL_SPECS,
                   help="control variate for the betting bound, fitted on each trial's stream (default markov:0)")
    p.add_argument("--pilot-draws", type=int, default=None, metavar="K",
                   help="draws that choose alpha and lambda (default: a tenth of --samples from 200 on; 0 = off)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="worker processes (results do not depend on it)")


def run(args: argparse.Namespace) -> int:
    from ..validate import validate

    result = validate(args.source, trials=args.trials, tokens=args.tokens, samples=args.samples, order=args.order,
                      smoothing=args.smoothing, methods=args.method.split(","), delta=args.delta, seed=args.seed,
                      workers=args.workers, subsample_ci=args.subsample_ci, control=args.control_variate,
                      pilot_draws=args.pilot_draws)
    print(json.dumps(result, indent=2))
    return 0
