"""Samplers: reproducible from the seed, right marginals (fixed seeds: deterministic, cannot flake)."""
import numpy as np
import pytest
from scipy import stats

from tokenbound.data.context import ContextRule
from tokenbound.data.sampling import draw_plan, plan_rows
from tokenbound.errors import TokenboundError

M = 50
DOCS = np.array([0, 7, 8, 20, 33, 49])  # the last document is one token long


def chi2_pvalue(units, probs):
    counts = np.bincount(units, minlength=len(probs))
    return stats.chisquare(counts, probs * counts.sum()).pvalue


@pytest.mark.parametrize("sampler,rule", [("token", "doc:8"), ("block", "stream:8/3"), ("document", "doc:4/2")])
def test_reproducible_from_seed(sampler, rule):
    r = ContextRule.parse(rule)
    a = draw_plan(sampler, 100, 42, r, M, DOCS)
    b = draw_plan(sampler, 100, 42, r, M, DOCS)
    c = draw_plan(sampler, 100, 43, r, M, DOCS)
    assert np.array_equal(a.units, b.units) and not np.array_equal(a.units, c.units)
    assert a.describe() == {**b.describe()} and a.describe()["sampler"] == sampler and a.describe()["seed"] == 42


def test_token_sampler_is_uniform():
    plan = draw_plan("token", 100_000, 0, ContextRule.parse("doc:8"), M, DOCS)
    assert plan.units.min() >= 0 and plan.units.max() < M
    assert chi2_pvalue(plan.units, np.full(M, 1 / M)) > 1e-3
    # and not uniform over something else: a skewed target is rejected
    skew = np.linspace(1, 2, M)
    assert chi2_pvalue(plan.units, skew / skew.sum()) < 1e-6


def test_block_sampler_is_length_weighted_and_unbiased():
    rule = ContextRule.parse("stream:8/3")
    windows = rule.windows(M)
    weights = windows.num_scored / M
    assert weights[0] == 8 / M and weights[1] == 3 / M  # the first window scores more positions
    plan = draw_plan("block", 200_000, 1, rule, M, DOCS)
    assert plan.population == len(windows)
    assert chi2_pvalue(plan.units, weights) > 1e-3
    assert chi2_pvalue(plan.units, np.full(len(windows), 1 / len(windows))) < 1e-6
    # the mean over drawn windows of a window's mean value estimates the token mean without bias
    values = np.random.default_rng(9).exponential(size=M) * np.arange(M)
    window_mean = np.array([values[f:e].mean() for f, e in zip(windows.first_scored, windows.end_scored)])
    draws = window_mean[plan.units]
    se = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - values.mean()) < 5 * se
    naive = window_mean.mean()  # uniform window weights would be biased here
    assert abs(naive - values.mean()) > 10 * se


def test_document_sampler_is_uniform_over_documents():
    plan = draw_plan("document", 60_000, 2, ContextRule.parse("doc:4"), M, DOCS)
    assert plan.population == len(DOCS)
    assert chi2_pvalue(plan.units, np.full(len(DOCS), 1 / len(DOCS))) > 1e-3


def test_rows_cover_exactly_what_each_draw_scores():
    rule = ContextRule.parse("doc:4/2")
    tok = draw_plan("token", 30, 3, rule, M, DOCS)
    rows = plan_rows(tok, rule, range(30), M, DOCS)
    start, end = rule.contexts(tok.units, DOCS)
    assert np.array_equal(rows.in_start, start) and np.array_equal(rows.in_end, tok.units)
    assert np.array_equal(rows.score_to - rows.score_from, np.ones(30)) and rows.draw.tolist() == list(range(30))

    blk = draw_plan("block", 30, 3, rule, M, DOCS)
    rows = plan_rows(blk, rule, range(10, 20), M, DOCS)
    assert rows.draw.tolist() == list(range(10, 20))
    w = rule.window_bounds(blk.units[10:20], 0, M)
    assert np.array_equal(rows.in_start, w.start) and np.array_equal(rows.score_from, w.first_scored)

    doc = draw_plan("document", 8, 3, rule, M, DOCS)
    rows = plan_rows(doc, rule, range(8), M, DOCS)
    ends = np.append(DOCS[1:], M)
    for k, d in enumerate(doc.units):
        sel = rows.draw == k
        scored = np.concatenate([np.arange(f, e) for f, e in zip(rows.score_from[sel], rows.score_to[sel])])
        assert scored.tolist() == list(range(DOCS[d], ends[d]))
        assert (rows.in_start[sel] >= DOCS[d] - 1).all()  # never reads before the document's own eot
        assert (rows.in_end[sel] - rows.in_start[sel] <= 4).all()


def test_plan_errors():
    r = ContextRule.parse("doc:8")
    with pytest.raises(TokenboundError, match="^samples"):
        draw_plan("token", 0, 0, r, M, DOCS)
    with pytest.raises(TokenboundError, match="^sampler"):
        draw_plan("tokens", 5, 0, r, M, DOCS)
    with pytest.raises(TokenboundError, match="^sampler document"):
        draw_plan("document", 5, 0, ContextRule.parse("stream:8"), M, DOCS)
    with pytest.raises(TokenboundError, match="empty"):
        draw_plan("token", 5, 0, r, 0, DOCS[:1])
