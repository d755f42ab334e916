"""CLI for `tokenbound bound` (see evaluate/bound.py)."""
from __future__ import annotations

from pathlib import Path

from .argtypes import device
from .bound_options import add_options, option_values

HELP = "score a model on its training tokens and write a certificate (JSON) with every bound"
EXAMPLE = ("tokenbound bound --compressed out/compressed --data data/stdlib --out out/cert.json "
           "--samples 10000 --context doc:128")


FLAGS = ("samples", "context", "sampler", "doc_samples", "delta", "heldout", "train_data", "assume_unseen",
         "subsample_ci", "azuma_ci", "extra_bits", "control_variate", "pilot_draws", "seed")


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--compressed", type=Path, help="a CompressedModel directory (tokenbound compress)")
    src.add_argument("--markov", type=Path, help="a Markov-chain model directory (tokenbound markov)")
    src.add_argument("--run", type=Path, help="an uncompressed Run (charged its lossless archive length)")
    src.add_argument("--hf", type=Path, help="a local Hugging Face model directory (charged its archive length)")
    src.add_argument("--gguf", type=Path, help="a .gguf model file (charged its archive length)")
    p.add_argument("--data", type=Path, required=True, help="the TokenStore the model was trained on")
    p.add_argument("--out", type=Path, required=True, help="certificate path (.json); stats go beside it")
    add_options(p, FLAGS)
    p.add_argument("--batch-size", type=int, default=8,
                   help="model input rows per forward pass (memory and speed only; the numbers do not depend on it)")
    p.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N: where the model scores")
    p.add_argument("--force", action="store_true", help="overwrite an existing certificate")
    p.set_defaults(_flags={"n": "--samples", "rule": "--context"})  # evaluate.score's names for them


def run(args) -> int:
    from ..evaluate.bound import BoundOptions, bound, summary_lines

    check_block_sampler(args.sampler, args.context)
    model = args.compressed or args.markov or args.run or args.hf or args.gguf
    options = BoundOptions(**option_values(args, FLAGS))
    cert = bound(model, args.data, args.out, options, device=args.device, batch_size=args.batch_size,
                 force=args.force)
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
