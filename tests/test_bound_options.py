"""The bound options are defined once: `bound` and `validate` flags come from cli/bound_options.py, with the
library's defaults, and parse into the typed BoundOptions."""
import dataclasses

import pytest

from tokenbound.cli import build_parser
from tokenbound.cli.bound import FLAGS
from tokenbound.cli.bound_options import OPTIONS, option_values
from tokenbound.cli.validate import CERTIFY_FLAGS
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.options import BoundOptions
from tokenbound.validate.harness import VALIDATE_CONTROL


def _verb(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sub.choices[name]


def _flags(parser):
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_bound_flags_come_from_the_table_with_the_library_defaults():
    flags = _flags(_verb("bound"))
    library = BoundOptions()
    assert set(FLAGS) == set(OPTIONS) and set(FLAGS) <= {f.name for f in dataclasses.fields(BoundOptions)}
    for name in FLAGS:
        action = flags[name]
        assert action.option_strings == [OPTIONS[name].flag] and action.help == OPTIONS[name].help
        expected = [] if name == "extra_bits" else getattr(library, name)
        assert action.default == expected, name


def test_validate_shares_the_certificate_flags_with_its_own_control_default():
    bound_flags, validate_flags = _flags(_verb("bound")), _flags(_verb("validate"))
    for name in CERTIFY_FLAGS:
        v, b = validate_flags[name], bound_flags[name]
        assert (v.option_strings, v.help, v.choices, v.type) == (b.option_strings, b.help, b.choices, b.type)
    assert validate_flags["control_variate"].default == VALIDATE_CONTROL != bound_flags["control_variate"].default
    assert validate_flags["delta"].default == bound_flags["delta"].default


def test_parsed_flags_make_typed_options():
    args = build_parser().parse_args(["bound", "--markov", "m", "--data", "d", "--out", "c.json", "--samples", "all",
                                      "--extra-bits", "arch=1", "--extra-bits", "seed=2", "--delta", "0.1"])
    opts = BoundOptions(**option_values(args, FLAGS))
    assert opts.samples == "all" and opts.delta == 0.1 and opts.extra_bits == {"arch": 1.0, "seed": 2.0}
    checked = opts.checked()
    assert checked.sampler == "all" and checked.pilot_draws == 0
    with pytest.raises(TokenboundError) as e:
        dataclasses.replace(opts, samples=300, pilot_draws=299).checked()
    assert e.value.param == "pilot_draws" and e.value.cli_message().startswith("--pilot-draws: ")


def test_assume_unseen_without_heldout_is_refused_by_the_options_themselves():
    with pytest.raises(TokenboundError, match="^assume_unseen: only with --heldout") as e:
        BoundOptions(assume_unseen=True).checked()
    assert e.value.cli_message().startswith("--assume-unseen: ")
    assert BoundOptions(assume_unseen=True, heldout=True).checked().assume_unseen
