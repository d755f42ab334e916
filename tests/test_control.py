"""Control variates: values from the store, exact population summary, certificates use them, verify re-checks."""
import dataclasses

import numpy as np
import pytest

from tokenbound.bounds.certificate import certify, compare, recompute
from tokenbound.bounds.schema import CertifyInputs
from tokenbound.bounds.smoothing import loss_range_bits, smoothed_loss_bits
from tokenbound.bounds.stats import TokenStats
from tokenbound.bounds.subsampling import draw_means, upper_mean
from tokenbound.bounds.variance import penalized_losses, psi
from tokenbound.data.context import ContextRule
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.control import attach_control, check_control, position_bits

V, EOT = 16, 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    # documents differ in difficulty (2 to 15 distinct tokens), as source files do
    docs = [np.concatenate([rng.integers(1, rng.integers(3, V + 1), rng.integers(20, 200)), [EOT]])
            for _ in range(40)]
    tokens = np.concatenate(docs).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum([d.size for d in docs])[:-1]]).astype(np.int64)
    return write_store(tmp_path_factory.mktemp("cv") / "s", tokens, offsets, V, EOT)


def block_stats(store, rule="doc:16/16", n=60, seed=0):
    """Block-sampler stats over `rule`'s windows with a fake model whose loss tracks the bigram's."""
    rule = ContextRule.parse(rule)
    rng = np.random.default_rng(seed)
    windows = rule.window_of(rng.integers(0, store.num_tokens, n))
    w = rule.window_bounds(windows, 0, store.num_tokens)
    positions = np.concatenate([np.arange(a, b) for a, b in zip(w.first_scored, w.end_scored)])
    draw = np.repeat(np.arange(n), w.num_scored)
    g = position_bits(store, "markov:1")[positions]
    prob = np.clip(2.0 ** -(0.8 * g + rng.normal(0, 0.3, g.size)), 1e-6, 1.0)
    return TokenStats(positions, prob, np.ones(g.size, int), 0.8 * g, draw,
                      meta={"sampler": "block", "context_rule": str(rule), "seed": seed,
                            "population_tokens": store.num_tokens, "vocab_size": V})


def test_attach_computes_exact_population_summary(store, tmp_path):
    stats = attach_control(block_stats(store), store, "markov:1")
    g = position_bits(store, "markov:1")
    summary = stats.meta["control_variate"]
    assert summary["spec"] == "markov:1" and summary["population_mean_bits"] == pytest.approx(g.mean(), rel=1e-12)
    assert np.array_equal(stats.control_bits, g[stats.positions])
    rule = ContextRule.parse("doc:16/16")
    w = rule.windows(store.num_tokens)
    means = [g[a:b].mean() for a, b in zip(w.first_scored, w.end_scored)]
    assert summary["draw_min_bits"] == pytest.approx(min(means)) and summary["draw_max_bits"] == pytest.approx(max(means))
    cv = stats.control_variate()
    assert cv.draws.shape == (60,) and (cv.draws >= cv.lo - 1e-12).all() and (cv.draws <= cv.hi + 1e-12).all()
    stats.save(tmp_path / "s.npz")
    back = TokenStats.load(tmp_path / "s.npz")
    assert np.array_equal(back.control_bits, stats.control_bits) and back.meta == stats.meta
    assert check_control(back, store) == []


def test_tampered_control_is_caught(store):
    stats = attach_control(block_stats(store), store, "markov:1")
    stats.meta["control_variate"]["population_mean_bits"] -= 0.5
    assert any("population_mean_bits" in p for p in check_control(stats, store))
    stats = attach_control(block_stats(store), store, "markov:1")
    stats.control_bits[3] += 1.0
    assert any("per-position" in p for p in check_control(stats, store))


def test_malformed_control_is_refused(store):
    stats = attach_control(block_stats(store), store, "markov:1")
    bad = TokenStats(stats.positions, stats.prob, stats.rank, stats.entropy_bits, stats.draw,
                     meta={k: v for k, v in stats.meta.items() if k != "control_variate"},
                     control_bits=stats.control_bits)
    with pytest.raises(TokenboundError, match="control_variate"):
        bad.validate()
    with pytest.raises(TokenboundError, match="^control_variate: expected one of") as e:
        attach_control(block_stats(store), store, "markov:3")
    assert e.value.cli_message().startswith("--control-variate: ")


def test_certificate_uses_the_control_and_recomputes(store):
    plain = block_stats(store, n=400)
    with_cv = attach_control(plain, store, "markov:1")
    inputs = CertifyInputs(message_bits=200.0, delta=0.05, subsample_ci="betting", top_k=())
    a, b = certify(plain, inputs), certify(with_cv, inputs)
    assert a.sample.control_variate_used is None
    assert b.sample.control_variate_used["spec"] == "markov:1"
    assert b.bounds["variance_adaptive"].control_variate is True
    # the variance-adaptive subsampling term is the betting bound on the penalized draws with the control
    va = b.bounds["variance_adaptive"]
    lam = va.lambda_
    l_min, l_max, rng_ = loss_range_bits(np.array([va.alpha]), V)
    losses = smoothed_loss_bits(with_cv.prob, np.array([va.alpha]), V)
    centre = np.clip(with_cv.entropy_bits[None], l_min[:, None], l_max[:, None])
    z = draw_means(penalized_losses(losses, centre, rng_, lam), with_cv.draw, with_cv.num_draws)
    mean, up = upper_mean(z, l_min, l_max + rng_ * float(psi(lam)) / lam, va.delta_shares["subsample"], "betting",
                          control=with_cv.control_variate())
    assert va.terms.subsample_bits == pytest.approx(float(up[0] - mean[0]), rel=1e-9)
    assert va.terms.subsample_bits != a.bounds["variance_adaptive"].terms.subsample_bits
    assert compare(b, recompute(b.to_json(), with_cv)) == []
    off = certify(with_cv, dataclasses.replace(inputs, control_variate=False))
    assert off.bounds["variance_adaptive"].bound_bits_per_token == a.bounds["variance_adaptive"].bound_bits_per_token


def test_control_refused_up_front_on_stores_too_large_for_memory(monkeypatch):
    import tokenbound.evaluate.control as control

    monkeypatch.setattr(control, "MAX_CONTROL_TOKENS", 1000)
    with pytest.raises(TokenboundError, match="--control-variate none"):
        control.check_control_spec("markov:1", 5000)
    assert control.check_control_spec("none", 5000) == "none"
    assert control.check_control_spec("markov:0", 999) == "markov:0"
