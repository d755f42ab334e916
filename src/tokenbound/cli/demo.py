"""CLI for `tokenbound demo` (see demo.py)."""
from __future__ import annotations

from pathlib import Path

from .argtypes import device, positive_float

HELP = ("the main job: prepare stdlib, train + compress a GPT and certify it, certify a dense GPT on held-out text, "
        "certify Markov baselines, print the table")
EXAMPLE = "tokenbound demo --out demo_out"


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"),
                   help="working directory; rerunning resumes (default: demo_out)")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="abort limit for training, in minutes (default: none); the demo trains a fixed number "
                        "of steps, and when the limit is spent it stops with a message and resumes on the next run")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the held-out split, the model's initialization and every sample (default 0)")
    p.add_argument("--device", type=device, default="cpu", help="cpu | cuda: where the GPT trains and scores (default cpu)")


def run(args) -> int:
    from ..demo import DemoConfig, demo

    result = demo(args.out, minutes=args.minutes, cfg=DemoConfig(seed=args.seed, device=args.device))
    print(result["table"])
    for title, lines in result["sections"]:
        print(title)
        print("\n".join(lines))
    print(f"\nreport: {result['report']}   total time: {result['seconds']:.0f} s")
    return 0
