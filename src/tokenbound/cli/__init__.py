"""The `tokenbound` command: one subcommand per verb (docs/design.md §6).

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

# verb -> module; order is the order shown in --help (the pipeline order, docs/design.md §1)
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example's layout and shows each option's default unless its help already says it (or there is
    none to show: None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == [] or not action.option_strings
                or default == argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


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
                           formatter_class=HelpFormatter)
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
        print(f"tokenbound {args.verb}: error: {e.cli_message(getattr(args, '_flags', None))}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as e:
        # The environment, not a bug: a path that cannot be read or written, a full disk, too little memory.
        if args.debug or os.environ.get("TOKENBOUND_DEBUG"):
            raise
        print(f"tokenbound {args.verb}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tokenbound {args.verb}: interrupted", file=sys.stderr)
        return 130


def describe_os_error(e: BaseException) -> str:
    """One line for an OSError (the path(s) and the system's reason) or a MemoryError."""
    if isinstance(e, MemoryError):
        return f"out of memory{': ' + str(e) if str(e) else ''} (use a smaller model, batch or input)"
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    paths = [p for p in (getattr(e, "filename", None), getattr(e, "filename2", None)) if p is not None]
    where = " -> ".join(os.fsdecode(p) if isinstance(p, (bytes, os.PathLike)) else str(p) for p in paths)
    return f"{where}: {reason}" if where else reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
