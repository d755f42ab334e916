"""The `tokenbound` command: one subcommand per verb (DESIGN §6).

Each verb lives in ``tokenbound/cli/<verb>.py`` and defines:
- ``HELP``: one line for the verb list;
- ``EXAMPLE``: an example command line shown in ``--help``;
- ``add_arguments(parser)``: argparse arguments (no heavy imports at module level);
- ``run(args) -> int``: parses nothing itself, calls the verb's typed function, returns an exit code.
User errors are raised as TokenboundError and printed here as one line (exit 2); ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import TokenboundError

# verb -> module; order is the order shown in --help (the pipeline order, DESIGN §1)
VERBS = ["prepare", "info", "train", "markov", "compress", "bound", "verify", "validate", "report", "demo",
         "experiment"]


def _verb_module(verb: str):
    name = f"tokenbound.cli.{verb.replace('-', '_')}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None  # verb not built yet
        raise


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's usage errors as one line naming the flag (the house rule for bad input), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="tokenbound",
        description="Certified token-level generalization bounds for language models.",
        epilog="Run `tokenbound VERB --help` for a verb's options and an example.")
    parser.add_argument("--version", action="version", version=f"tokenbound {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        mod = _verb_module(verb)
        if mod is None:
            continue
        p = sub.add_parser(verb, help=mod.HELP, description=mod.HELP,
                           epilog=f"example:\n  {mod.EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", help="show full tracebacks on error")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TokenboundError as e:
        if args.debug or os.environ.get("TOKENBOUND_DEBUG"):
            raise
        print(f"tokenbound {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tokenbound {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
