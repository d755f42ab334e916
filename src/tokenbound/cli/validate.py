"""`tokenbound validate`: Monte Carlo coverage of the bounds on sources with a known next-token law."""
from __future__ import annotations

import argparse
import json

from ..validate.harness import VALIDATE_CONTROL
from .bound_options import add_options

CERTIFY_FLAGS = ("delta", "subsample_ci", "control_variate", "pilot_draws")  # as in `bound` (bound_options.py)

HELP = "Monte Carlo validity check of the bounds on synthetic sources (a table, or JSON with --json)"
EXAMPLE = "tokenbound validate --source markov:order=1,vocab=8 --trials 200 --tokens 10000 --order 1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="markov", metavar="SPEC",
                   help="markov:order=K,vocab=V,conc=C | hmm:states=S,vocab=V,conc=C | "
                        "docs:chains=J,vocab=V,len=L,conc=C | spiky:vocab=V,frac=F,eps=E | "
                        "shuffle:vocab=V,copies=C (exact ties under a fitted unigram) (default: markov)")
    p.add_argument("--trials", type=int, default=100, metavar="T", help="number of independent trials")
    p.add_argument("--tokens", type=int, default=10_000, metavar="M", help="training tokens per trial")
    p.add_argument("--samples", type=int, default=2_000, metavar="N",
                   help="positions sampled uniformly with replacement (0 = every position once)")
    p.add_argument("--order", type=int, default=1, metavar="K", help="order of the fitted Markov model")
    p.add_argument("--smoothing", default="wb", metavar="SPEC", help="wb or add:BETA (the fitted model's)")
    p.add_argument("--method", default="azuma,variance_adaptive,broken", metavar="NAME[,NAME]",
                   help="methods to check: azuma, variance_adaptive, broken (deliberately invalid)")
    add_options(p, CERTIFY_FLAGS, defaults={"control_variate": VALIDATE_CONTROL})
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the source and every trial")
    p.add_argument("--top-k", default="1,3", metavar="K[,K]",
                   help="top-k error bounds to check against the exact top-k risk (default 1,3; 'none' = skip)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="worker processes (results do not depend on it)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of tables")
    p.set_defaults(_flags={"methods": "--method"})  # validate()'s name for it


def run(args: argparse.Namespace) -> int:
    from ..validate import validate

    result = validate(args.source, trials=args.trials, tokens=args.tokens, samples=args.samples, order=args.order,
                      smoothing=args.smoothing, methods=args.method.split(","), delta=args.delta, seed=args.seed,
                      workers=args.workers, subsample_ci=args.subsample_ci, control=args.control_variate,
                      pilot_draws=args.pilot_draws, top_k=parse_top_k(args.top_k))
    print(json.dumps(result, indent=2) if args.json else format_tables(result))
    return 0


def parse_top_k(text: str) -> tuple[int, ...]:
    from ..errors import TokenboundError

    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise TokenboundError(f"--top-k: expected comma-separated integers or 'none', got {text!r}") from None


def _row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(header, rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths)] + [_row(r, widths) for r in rows]


def _ci(entry) -> str:
    lo, hi = entry["failure_rate_ci95"]
    return f"[{lo:.4f}, {hi:.4f}]"


def format_tables(result: dict) -> str:
    """The result as two plain-text tables: log-loss methods (bits per token) and top-k errors."""
    t, delta = result["trials"], result["delta"]
    src = result["source"]
    lines = [f"source {src['spec']} (V = {src['vocab_size']}); {t} trials, m = {result['tokens']:,}, "
             f"n = {result['samples'] if result['samples'] == 'all' else format(result['samples'], ',')}, "
             f"fitted order {result['order']} ({result['smoothing']}), delta = {delta:g}, seed {result['seed']}; "
             f"mean message {result['mean_message_bits']:,.1f} bits", ""]
    def ok(e) -> str:
        return "yes" if e["consistent_with_delta"] else "NO"

    rows = [[name, f"{e['failures']}/{t}", f"{e['failure_rate']:.4f}", _ci(e), f"{e['mean_bound_bits']:.4f}",
             f"{e['mean_true_risk_bits']:.4f}", f"{e['mean_slack_bits']:.4f}", ok(e)]
            for name, e in result["methods"].items()]
    lines += _table(["log loss (bits/token)", "failures", "rate", "CP 95% interval", "mean bound", "mean R(h)",
                     "mean slack", "consistent with delta"], rows)
    if result.get("top_k"):
        rows = [[f"top-{k}", f"{e['failures']}/{t}", f"{e['failure_rate']:.4f}", _ci(e), f"{e['mean_bound']:.4f}",
                 f"{e['mean_true_risk']:.4f}", f"{e['mean_train_error']:.4f}", f"{e['mean_slack']:.4f}", ok(e)]
                for k, e in result["top_k"].items()]
        lines += [""] + _table(["top-k error", "failures", "rate", "CP 95% interval", "mean bound", "mean R_k(h)",
                                "mean train error", "mean slack", "consistent with delta"], rows)
    lines += ["", f"failure: bound < the exact true risk; a valid bound fails in at most delta = {delta:g} of the "
                  "trials ('NO': even the interval's lower end is above delta). 'broken' is deliberately invalid.",
              f"top-k prediction sets: the k tokens first in (probability desc, id asc) order ({result['rank_rule']})."]
    return "\n".join(lines)
