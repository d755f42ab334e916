"""The bound options, defined once: the flags of `bound` and `validate` are generated from this table.

Each entry names an ``evaluate.bound.BoundOptions`` field (the flag is ``--`` + the name with dashes), how
argparse parses it and its help; the default is BoundOptions' own unless a verb overrides it (`validate`'s
control variate). A library error about a field (``TokenboundError(param=NAME)``) is printed under its flag.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..bounds.subsampling import CI_METHODS
from ..evaluate.control import CONTROL_SPECS
from .argtypes import finite_float, samples_or_all

_LIBRARY = object()  # the default is BoundOptions'


def _extra_bits(specs: list[str]) -> dict[str, float]:
    from ..bounds.budget import parse_extra_bits

    return parse_extra_bits(specs)


@dataclass(frozen=True)
class Option:
    """One flag: `name` (a BoundOptions field), its argparse `type` / `action` / `choices` / `metavar`, its
    `help`, and `convert` applied to the parsed value (e.g. repeated NAME=BITS into a dict)."""

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    action: str | None = None
    convert: Callable[[Any], Any] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("samples", "number of sampler draws, or 'all': score every window of the rule once (an exhaustive "
                      "certificate: exact empirical risk, no subsampling term, no pilot)", type=samples_or_all),
    Option("context", "context rule: doc:B | stream:B | doc:B/s | stream:B/s (default: doc over the model's full "
                      "context)"),
    Option("sampler", "token: one forward pass per sampled token (the paper's way); block: sample whole windows "
                      "of a strided rule (needs doc:B/s or stream:B/s)", choices=("token", "block")),
    Option("doc_samples", "also compute the document-level baseline from this many sampled documents", type=int),
    Option("delta", "total failure probability of each bound", type=finite_float, metavar="D"),
    Option("heldout", "certify on DATA/val (or DATA) with message length 0: a test-set bound; refused unless the "
                      "model's recorded training stores show it never saw that data (or --assume-unseen)",
           action="store_true"),
    Option("train_data", "with --heldout: the training store to check disjointness", type=Path),
    Option("assume_unseen", "with --heldout, for a model whose training data is unknown (--hf, --gguf, or a "
                            "compressed one): certify under the ASSUMPTION that the model was not trained on this "
                            "data; the certificate records it and is labelled conditional on it",
           action="store_true"),
    Option("subsample_ci", "confidence bound for the variance-adaptive method's subsampled sums",
           choices=("betting", "best", "maurer_pontil", "hoeffding")),
    Option("azuma_ci", "confidence bound for the Azuma method's subsampled sum (default: the same as "
                       "--subsample-ci, with the control variate when betting; hoeffding = the seed paper's)",
           choices=CI_METHODS),
    Option("extra_bits", "pay BITS prior bits, itemised as NAME, for a choice of the model or context rule made "
                         "after looking at the training data (log2 K for a choice among K alternatives fixed in "
                         "advance; repeatable; choices made by comparing certificates need --delta/K: "
                         "docs/theory.md §12)", metavar="NAME=BITS", action="append", convert=_extra_bits),
    Option("control_variate", "with betting: a bigram (markov:1) or unigram (markov:0) loss known on every "
                              "position (fitted on the certified stream), which narrows the subsampling term "
                              "(docs/theory.md §5)", choices=CONTROL_SPECS),
    Option("pilot_draws", "draws that choose alpha and lambda before the others certify them, so the subsampling "
                          "term pays for no grid (default: a tenth of --samples from 200 on; 0 = off)", type=int,
           metavar="K"),
    Option("seed", "seed of the sampled draws (and the document-level and pilot choices)", type=int),
)}


def add_options(parser: argparse.ArgumentParser, names: Iterable[str],
                defaults: Mapping[str, Any] | None = None) -> None:
    """Add the flags of `names` (OPTIONS keys) to `parser`, each with BoundOptions' default or `defaults`'."""
    from ..evaluate.options import BoundOptions

    library = {f.name: getattr(BoundOptions(), f.name) for f in fields(BoundOptions)}
    for name in names:
        o = OPTIONS[name]
        default = (defaults or {}).get(name, library[name])
        kwargs: dict[str, Any] = {"help": o.help, "dest": name}
        if o.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            if o.action == "append":
                kwargs["action"], default = "append", []
            kwargs.update({k: v for k, v in (("type", o.type), ("choices", o.choices), ("metavar", o.metavar))
                           if v is not None})
            kwargs["default"] = default
        parser.add_argument(o.flag, **kwargs)


def option_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """{name: value} of the parsed flags of `names`, converted (BoundOptions keyword arguments)."""
    out = {}
    for name in names:
        value, convert = getattr(args, name), OPTIONS[name].convert
        out[name] = convert(value) if convert else value
    return out
