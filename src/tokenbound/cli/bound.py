"""CLI for `tokenbound bound` (see evaluate/bound.py)."""
from __future__ import annotations

from pathlib import Path

from ..evaluate.control import CONTROL_SPECS

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
    p.add_argument("--samples", type=int, default=10_000, help="number of sampler draws (default 10000)")
    p.add_argument("--context", help="context rule: doc:B | stream:B | doc:B/s | stream:B/s "
                                     "(default: doc over the model's full context)")
    p.add_argument("--sampler", default="token", choices=("token", "block"),
                   help="token: one forward pass per sampled token (the paper's way); block: sample whole "
                        "windows of a strided rule (needs doc:B/s or stream:B/s)")
    p.add_argument("--doc-samples", type=int, default=0,
                   help="also compute the document-level baseline from this many sampled documents")
    p.add_argument("--delta", type=float, default=0.05, help="total failure probability (default 0.05)")
    p.add_argument("--heldout", action="store_true",
                   help="certify on DATA/val (or DATA) with message length 0: a test-set bound")
    p.add_argument("--train-data", type=Path, help="with --heldout: the training store to check disjointness")
    p.add_argument("--subsample-ci", default="betting", choices=("betting", "best", "maurer_pontil", "hoeffding"),
                   help="confidence bound for the variance-adaptive method's subsampled sums (default betting)")
    p.add_argument("--control-variate", default="markov:1", choices=CONTROL_SPECS,
                   help="with betting: a bigram (markov:1) or unigram loss known on every position, which narrows "
                        "the subsampling term (default markov:1; docs/theory.md §5)")
    p.add_argument("--pilot-draws", type=int, default=None,
                   help="draws that choose alpha and lambda before the others certify them, so the subsampling "
                        "term pays for no grid (default: a tenth of --samples from 200 on; 0 = off)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="overwrite an existing certificate")


def run(args) -> int:
    from ..evaluate.bound import bound, summary_lines

    model = args.compressed or args.markov or args.run or args.hf or args.gguf
    cert = bound(model, args.data, args.out, samples=args.samples, context=args.context, sampler=args.sampler,
                 delta=args.delta, heldout=args.heldout, doc_samples=args.doc_samples, seed=args.seed,
                 device=args.device, batch_size=args.batch_size, train_data=args.train_data,
                 subsample_ci=args.subsample_ci, force=args.force, control_variate=args.control_variate,
                 pilot_draws=args.pilot_draws)
    print("\n".join(summary_lines(cert)))
    print(f"certificate: {args.out}")
    return 0
