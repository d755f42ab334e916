"""Prior-bit and δ bookkeeping (budget.py) and the break-even data size (breakeven.py)."""
import math

import pytest

from tokenbound.bounds.breakeven import azuma_break_even_closed_form, break_even_tokens
from tokenbound.bounds.budget import (check_delta, check_delta_split, check_extra_bits, check_message_bits,
                                      delta_shares, message_prior_items)
from tokenbound.bounds.martingale import azuma_complexity_bits
from tokenbound.errors import TokenboundError


def test_paper_split_matches_the_public_code():
    # r = n/(n+m) of δ for the main bound: n = 10_000, m = 990_000 ⇒ r = 0.01 ⇒ 0.0005 and 0.0495.
    s = delta_shares(0.05, "paper", 10_000, 990_000)
    assert s == pytest.approx({"main": 0.0005, "subsample": 0.0495}, rel=1e-12)
    assert delta_shares(0.05, "paper", 10_000, 990_000, exhaustive=True) == {"main": 0.05, "subsample": 0.0}


def test_equal_and_explicit_splits_never_exceed_delta():
    assert delta_shares(0.1, "equal", 5, 5) == {"main": 0.05, "subsample": 0.05}
    split = check_delta_split({"main": 0.5, "subsample": 0.3})
    assert sum(delta_shares(0.1, split, 5, 5).values()) == pytest.approx(0.08)
    assert delta_shares(0.1, {"main": 0.6, "subsample": 0.4}, 5, 5) == pytest.approx({"main": 0.06, "subsample": 0.04})


@pytest.mark.parametrize("split", ["nope", {"main": 0.7, "subsample": 0.4}, {"main": 1.0}, {"main": 0, "subsample": 1},
                                   {"main": 0.5, "subsample": 0.5, "other": 0.0},
                                   {"main": 0.5, "subsample": 0.3, "subsample_variance": 0.2}])
def test_bad_split(split):
    with pytest.raises(TokenboundError, match="delta_split"):
        check_delta_split(split)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, 2, float("nan")])
def test_bad_delta(delta):
    with pytest.raises(TokenboundError, match="delta"):
        check_delta(delta)


@pytest.mark.parametrize("bits", [-1, float("nan"), float("inf"), "x"])
def test_bad_message_bits(bits):
    with pytest.raises(TokenboundError, match="message_bits"):
        check_message_bits(bits)


def test_elias_gamma_prefix_for_non_prefix_free_lengths():
    # L = 1000.3 bits → 1001 whole bits; Elias gamma: 2⌊log2 1001⌋ + 1 = 2·9 + 1 = 19 bits.
    assert message_prior_items(1000.3, False) == {"message": 1001.0, "message_prefix": 19.0}
    assert message_prior_items(1000.3, True) == {"message": 1000.3}
    with pytest.raises(TokenboundError):
        message_prior_items(0.0, False)


def test_extra_bits_checked():
    assert check_extra_bits({"quant_levels": 2.0}) == {"quant_levels": 2.0}
    for bad in ({"alpha_grid": 1.0}, {"x": -1.0}, {"x": float("nan")}):
        with pytest.raises(TokenboundError, match="extra_bits"):
            check_extra_bits(bad)


def test_break_even_bisection_equals_closed_form_with_fixed_delta():
    # R̂ + s = 9 bits, target log2 V = 13, Δ = 10, L = 1e5 bits, δ1 = 0.01:
    # m* = 100·(1e5·ln 2 + ln 100)/(2·16) = 100·69319.32/32 = 216622.9 → 216623.
    emp, sub, rng, bits, d1, target = 8.5, 0.5, 10.0, 1e5, 0.01, 13.0
    closed = azuma_break_even_closed_form(emp, sub, rng, bits, d1, target)
    assert closed == 216623
    bisect = break_even_tokens(lambda m: emp + sub + float(azuma_complexity_bits(rng, bits, d1, m)), target)
    assert bisect == closed


def test_break_even_impossible_and_trivial():
    assert break_even_tokens(lambda m: 14.0 + 1.0 / m, 13.0) is None
    assert azuma_break_even_closed_form(13.0, 0.0, 1.0, 0.0, 0.05, 13.0) is None
    assert break_even_tokens(lambda m: 1.0, 13.0) == 1
    # bound 12 + 1e6/m < 13 ⇔ m > 1e6 ⇒ 1_000_001
    assert break_even_tokens(lambda m: 12.0 + 1e6 / m, 13.0) == 1_000_001
    assert math.isfinite(break_even_tokens(lambda m: 12.0 + 1e20 / m, 13.0))
