"""Context rules against an independent brute-force reading of docs/design.md §3 (the context rules)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tokenbound.data.context import ContextRule, eot_doc_offsets, extended_slice, last_eot_before
from tokenbound.errors import TokenboundError

EOT = 0


def brute_windows(m, B, s):
    """Literal windows: input ext[a, a+B), targets a+1..a+B that exist; first window scores all its targets,
    later ones their last s (of the B slots); a position belongs to the first window that scores it."""
    out, seen, w = [], set(), 0
    while len(seen) < m:
        a = -1 + w * s
        targets = [t for t in range(a + 1, a + B + 1) if t < m]
        slots = range(a + 1, a + B + 1)
        scored = [t for t in targets if (w == 0 or t in list(slots)[-s:]) and t not in seen]
        out.append((a, targets, scored))
        seen.update(scored)
        w += 1
    return out


def brute_context(ext, i, B, s, flavour):
    """ext is [eot] + tokens, so extended index e lives at ext[e + 1]. Returns the start extended index."""
    if s is None:
        lowest = max(i - B, -1)
    else:
        lowest = next(a for a, _, scored in brute_windows(len(ext) - 1, B, s) if i in scored)
    start = i
    while start > lowest:
        start -= 1
        if flavour == "doc" and ext[start + 1] == EOT:
            break
    return start


streams = st.lists(st.integers(0, 3), min_size=1, max_size=50)
rules = st.tuples(st.sampled_from(["doc", "stream"]), st.integers(1, 12)).flatmap(
    lambda fb: st.tuples(st.just(fb[0]), st.just(fb[1]), st.one_of(st.none(), st.integers(1, fb[1]))))


@settings(max_examples=300, deadline=None)
@given(streams, rules)
def test_contexts_match_brute_force(tokens, rule_parts):
    flavour, B, s = rule_parts
    rule = ContextRule(flavour, B, s)
    tokens = np.array(tokens)
    ext = [EOT] + tokens.tolist()
    offsets = eot_doc_offsets(tokens, EOT)
    m = len(tokens)
    starts, ends = rule.contexts(np.arange(m), offsets)
    expected = [brute_context(ext, i, B, None if s in (None, 1) else s, flavour) for i in range(m)]
    assert starts.tolist() == expected
    assert ends.tolist() == list(range(m))
    i = m // 2
    assert rule.context(i, tokens, offsets) == (expected[i], i)
    # at most B tokens; under doc no eot after the first token; under a strided rule at least B - s + 1 tokens
    # or everything back to the last eot (doc) / the stream start (stream)
    eff_s = s or 1
    for st_, i in zip(starts, range(m)):
        ctx = extended_slice(tokens, EOT, int(st_), i)
        assert 1 <= len(ctx) <= B
        floor = int(last_eot_before([i], offsets)[0]) if flavour == "doc" else -1
        assert len(ctx) >= min(B - eff_s + 1, i - floor)
        if flavour == "doc":
            assert EOT not in ctx[1:].tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(1, 16).flatmap(lambda b: st.tuples(st.just(b), st.integers(1, b))),
       st.integers(0, 5))
def test_strided_windows_score_every_position_once(m, bs, lo):
    B, s = bs
    rule = ContextRule("stream", B, s)
    hi = lo + m
    w = rule.windows(hi, lo=lo)
    scored = np.concatenate([np.arange(f, e) for f, e in zip(w.first_scored, w.end_scored)])
    assert sorted(scored.tolist()) == list(range(lo, hi))  # exactly once each
    assert (w.end - w.start <= B).all() and (w.end - w.start >= 1).all()
    assert (w.end_scored == w.end + 1).all()
    assert (w.first_scored > w.start).all()
    # every scored position sees >= B - s earlier tokens of the window, or everything since the span start
    for a, f, e in zip(w.start, w.first_scored, w.end_scored):
        for t in range(f, e):
            seen = t - a
            assert seen >= B - s or a == lo - 1
    # the literal enumeration (shifted to lo) gives the same windows
    ref = brute_windows(m, B, s)
    assert [(a + lo, [t + lo for t in sc]) for a, _, sc in ref] == [(int(a), list(range(f, e))) for a, f, e
                                                  in zip(w.start, w.first_scored, w.end_scored)]
    assert rule.window_of(scored, lo=lo).tolist() == np.repeat(np.arange(len(w)), w.num_scored).tolist()


def test_stride_one_is_the_full_rule_and_block_stride_is_nonoverlapping():
    tokens = np.array([3, 1, 0, 2, 2, 0, 1, 1, 1, 1, 3, 0])
    offsets = eot_doc_offsets(tokens, EOT)
    full, one = ContextRule.parse("doc:4"), ContextRule.parse("doc:4/1")
    assert one == full and str(one) == "doc:4"
    assert np.array_equal(full.contexts(np.arange(12), offsets)[0], ContextRule("doc", 4, 1).contexts(np.arange(12), offsets)[0])
    blocks = ContextRule.parse("stream:4/4").windows(12)
    assert blocks.as_tuples() == [(-1, 3, 0, 4), (3, 7, 4, 8), (7, 11, 8, 12)]


def test_windows_at_the_end_are_short():
    w = ContextRule.parse("stream:4/2").windows(7)
    assert w.as_tuples() == [(-1, 3, 0, 4), (1, 5, 4, 6), (3, 6, 6, 7)]


@pytest.mark.parametrize("spec", ["doc:1024", "stream:8", "doc:1024/512", "stream:16/16"])
def test_parse_roundtrip(spec):
    r = ContextRule.parse(spec)
    assert str(r) == spec and ContextRule.parse(str(r)) == r
    assert r.describe()["rule"] == spec


@pytest.mark.parametrize("spec", ["doc", "doc:", "doc:0", "window:8", "doc:8/9", "doc:8/0", "stream:-1", "doc:8/2/1"])
def test_parse_errors_name_the_flag(spec):
    with pytest.raises(TokenboundError) as e:
        ContextRule.parse(spec)
    assert e.value.cli_message().startswith("--context: ")


def test_eot_doc_offsets_and_last_eot():
    tokens = np.array([5, 0, 0, 7, 8, 0], dtype=np.uint16)
    assert eot_doc_offsets(tokens, 0, chunk=2).tolist() == [0, 2, 3]
    assert last_eot_before(np.arange(6), [0, 2, 3]).tolist() == [-1, -1, 1, 2, 2, 2]
    assert extended_slice(tokens, 0, -1, 2).tolist() == [0, 5, 0]
    with pytest.raises(TokenboundError, match="doc_offsets"):
        last_eot_before([1], [1, 2])
