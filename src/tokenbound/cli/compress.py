"""`tokenbound compress`: parse the arguments and call ``compress.stage.compress``."""
from __future__ import annotations

from .argtypes import device

HELP = "compress a model (quantization, QAT, PTQ or archive) into a CompressedModel with its message length"
EXAMPLE = "tokenbound compress --run runs/demo --method qat:levels=11,steps=300 --out compressed/demo-qat11"


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN", help="a trained tokenbound Run directory (methods quant, qat, archive)")
    src.add_argument("--hf", metavar="DIR", help="a Hugging Face model directory (methods ptq, archive)")
    src.add_argument("--gguf", metavar="FILE", help="a .gguf model file (methods ptq, archive)")
    parser.add_argument("--method", required=True, metavar="SPEC",
                        help="quant:levels=11 | quant:grid=5/7/11/15 | qat:levels=11,steps=300 | "
                             "ptq:bits=2,group=64,algo=gptq,hadamard=1 | archive  (see docs/compression.md)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the CompressedModel directory to write")
    parser.add_argument("--data", metavar="DIR",
                        help="training TokenStore (QAT, level grids, GPTQ calibration); default: the run's own")
    parser.add_argument("--eval-data", metavar="DIR",
                        help="TokenStore whose val/ split (or itself) gives held-out bits per token before/after")
    parser.add_argument("--eval-tokens", type=int, default=4096, metavar="N",
                        help="tokens evaluated with --eval-data (default 4096)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--device", type=device, default="cpu", help="cpu | cuda (default cpu)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args) -> int:
    from ..compress.stage import compress, print_summary
    from ..errors import TokenboundError

    if args.eval_tokens < 1:
        raise TokenboundError(f"--eval-tokens: must be >= 1, got {args.eval_tokens}")
    source_type, path = next((t, p) for t, p in (("run", args.run), ("hf", args.hf), ("gguf", args.gguf)) if p)
    summary = compress(source_type, path, args.method, args.out, data=args.data, force=args.force, seed=args.seed,
                       eval_data=args.eval_data, eval_tokens=args.eval_tokens, device=args.device)
    print_summary(summary)
    return 0
