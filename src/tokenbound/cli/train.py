"""`tokenbound train`: train a GPT on a TokenStore and write a Run directory."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .argtypes import device, positive_float

HELP = "train a GPT (any layer parameterization) on a TokenStore; writes a Run directory"
EXAMPLE = "tokenbound train --data data/stdlib --preset demo --layers lora:8 --out runs/demo-lora --steps 500"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="TokenStore directory (its val/ split is used for validation)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="named preset: tiny, demo, gpt2-small (see tokenbound.configs)")
    src.add_argument("--config", help='JSON file {"model": {...}, "train": {...}}')
    p.add_argument("--layers", help="layer spec, e.g. dense, lora:8, kron, monarch:4 (default: dense)")
    p.add_argument("--subspace", type=int, help="train only a random subspace of this dimension")
    p.add_argument("--init-from", type=Path, metavar="RUN",
                   help="start from this finished Run's weights (fine-tuning): dense layers for full fine-tuning, "
                        "e.g. --layers attn=lora:4,mlp=lora:4 for LoRA (written merged); the model keeps RUN's shape "
                        "and --preset/--config must agree with it (docs/training.md)")
    p.add_argument("--out", required=True, help="Run directory to write")
    p.add_argument("--max-minutes", type=positive_float,
                   help="abort limit: when spent, the run is checkpointed but not finalized and the command exits 2; "
                        "rerun with --resume to finish it (time never decides what is trained)")
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides the preset)")
    p.add_argument("--context", choices=["doc", "stream"], help="context rule for training windows (default doc)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization, batches and dropout")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (bf16 autocast on GPUs that support it)")
    p.add_argument("--resume", action="store_true", help="continue RUN.partial (interrupted) or RUN (finished)")
    p.add_argument("--force", action="store_true",
                   help="overwrite: discard an interrupted RUN.partial and replace an existing RUN once the new run "
                        "is finished (not with --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import TokenboundError
    from ..train.trainer import train

    if args.resume and args.force:
        raise TokenboundError("--force: cannot be combined with --resume (one continues RUN, the other replaces it)")
    if not args.resume and args.preset is None and args.config is None:
        raise TokenboundError("--preset / --config: give one of them (or --resume)")
    summary = train(Path(args.data), Path(args.out), preset=args.preset,
                    config=None if args.config is None else Path(args.config), layers=args.layers,
                    subspace=args.subspace, max_minutes=args.max_minutes, steps=args.steps, seed=args.seed,
                    device=args.device, resume=args.resume, progress=not args.no_progress, context=args.context,
                    force=args.force, init_from=args.init_from)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0
