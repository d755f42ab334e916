"""`tokenbound info`: describe a TokenStore (logic in tokenbound.data.info)."""
from __future__ import annotations

HELP = "describe a TokenStore: tokens, documents, vocabulary, frequent tokens, hashes"
EXAMPLE = "tokenbound info data/stdlib"


def add_arguments(parser) -> None:
    parser.add_argument("dir", metavar="DIR", help="TokenStore directory")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="most frequent tokens to list (default 10)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    import json

    from ..data.info import format_info, store_info

    if args.top < 0:
        from ..errors import TokenboundError

        raise TokenboundError(f"--top: must be >= 0, got {args.top}")
    info = store_info(args.dir, top=args.top)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
