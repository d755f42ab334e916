"""CLI for `tokenbound bound` (see evaluate/bound.py)."""
from __future__ import annotations

from pathlib import Path

from ..bounds.subsampling import CI_METHODS
from ..evaluate.control import CONTROL_SPECS
from .argtypes import device, finite_float, samples_or_all

HELP = "score a model on its training tokens and write a certificate (JSON) with every bound"
EXAMPLE = ("tokenbound bound --compressed out/compressed --data data/stdlib --out out/cert.json "
           "--samples 10000 --context doc:128")


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--compressed", type=Path, help="a CompressedModel directory (tokenbound compress)")
    src.add_argument("--markov", type=Path, help="a Markov-chain model directory (tokenbound markov)")
    src.add_argument("--run", type=Path, help="an uncompressed Run (charged its lossless archive length)")
    src.add_argument("--hf", type=Path, help="a local Hugging Face model directory (charged its archive length)")
    src.add_argument("--gguf", type=Path, help="a .gguf model file (charged its archive length)")
    p.add_argument("--data", type=Path, required=True, help="the TokenStore the model was trained on")
    p.add_argument("--out", type=Path, required=True, help="certificate path (.json); stats go beside it")
    p.add_argument("--samples", type=samples_or_all, default=10_000,
                   help="number of sampler draws (default 10000), or 'all': score every window of the rule once "
                        "(an exhaustive certificate: exact empirical risk, no subsampling term, no pilot)")
    p.add_argument("--context", help="context rule: doc:B | stream:B | doc:B/s | stream:B/s "
                                     "(default: doc over the model's full context)")
    p.add_argument("--sampler", default="token", choices=("token", "block"),
                   help="token: one forward pass per sampled token (the paper's way); block: sample whole "
                        "windows of a strided rule (needs doc:B/s or stream:B/s)")
    p.add_argument("--doc-samples", type=int, default=0,
                   help="also compute the document-level baseline from this many sampled documents")
    p.add_argument("--delta", type=finite_float, default=0.05, help="total failure probability (default 0.05)")
    p.add_argument("--heldout", action="store_true",
                   help="certify on DATA/val (or DATA) with message length 0: a test-set bound; refused unless "
                        "the model's recorded training stores show it never saw that data (or --assume-unseen)")
    p.add_argument("--train-data", type=Path, help="with --heldout: the training store to check disjointness")
    p.add_argument("--assume-unseen", action="store_true",
                   help="with --heldout, for a model whose training data is unknown (--hf, --gguf, or a "
                        "compressed one): certify under the ASSUMPTION that the model was not trained on this "
                        "data; the certificate records it and is labelled conditional on it")
    p.add_argument("--subsample-ci", default="betting", choices=("betting", "best", "maurer_pontil", "hoeffding"),
                   help="confidence bound for the variance-adaptive method's subsampled sums (default betting)")
    p.add_argument("--azuma-ci", default=None, choices=CI_METHODS,
                   help="confidence bound for the Azuma method's subsampled sum (default: the same as "
                        "--subsample-ci, with the control variate when betting; hoeffding = the seed paper's)")
    p.add_argument("--extra-bits", action="append", default=[], metavar="NAME=BITS",
                   help="pay BITS prior bits, itemised as NAME, for a choice of the model or context rule made after "
                        "looking at the training data (log2 K for a choice among K alternatives fixed in advance; "
                        "repeatable; choices made by comparing certificates need --delta/K: docs/theory.md §12)")
    p.add_argument("--control-variate", default="markov:1", choices=CONTROL_SPECS,
                   help="with betting: a bigram (markov:1) or unigram loss known on every position, which narrows "
                        "the subsampling term (default markov:1; docs/theory.md §5)")
    p.add_argument("--pilot-draws", type=int, default=None,
                   help="draws that choose alpha and lambda before the others certify them, so the subsampling "
                        "term pays for no grid (default: a tenth of --samples from 200 on; 0 = off)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="model input rows per forward pass (memory and speed only; the numbers do not depend on it; "
                        "default 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the sampled draws (and the document-level and pilot choices; default 0)")
    p.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N: where the model scores (default cpu)")
    p.add_argument("--force", action="store_true", help="overwrite an existing certificate")


def run(args) -> int:
    from ..bounds.budget import parse_extra_bits
    from ..evaluate.bound import bound, summary_lines

    check_block_sampler(args.sampler, args.context)
    model = args.compressed or args.markov or args.run or args.hf or args.gguf
    cert = bound(model, args.data, args.out, samples=args.samples, context=args.context, sampler=args.sampler,
                 delta=args.delta, heldout=args.heldout, doc_samples=args.doc_samples, seed=args.seed,
                 device=args.device, batch_size=args.batch_size, train_data=args.train_data,
                 assume_unseen=args.assume_unseen,
                 subsample_ci=args.subsample_ci, force=args.force, control_variate=args.control_variate,
                 pilot_draws=args.pilot_draws, azuma_ci=args.azuma_ci,
                 extra_bits=parse_extra_bits(args.extra_bits, "--extra-bits"))
    print("\n".join(summary_lines(cert)))
    print(f"certificate: {args.out}")
    return 0


def check_block_sampler(sampler: str, context: str | None) -> None:
    """``--sampler block`` samples whole windows of a strided rule: refuse it with a full rule (or none given)."""
    from ..data.context import ContextRule
    from ..errors import TokenboundError

    if sampler != "block":
        return
    rule = None if context is None else ContextRule.parse(context)
    if rule is None or not rule.is_strided:
        got = f"--context {context}" if context else "no --context (the default is a full doc rule)"
        raise TokenboundError(f"--sampler block: needs a strided context rule, doc:B/s or stream:B/s (e.g. "
                              f"doc:128/64), got {got}; use --sampler token for a full rule")
