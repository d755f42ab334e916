"""Monte Carlo validity harness (validate/): exact sources, exact true risk, coverage, and a harness that can fail."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tokenbound.cli import main as cli_main
from tokenbound.errors import TokenboundError
from tokenbound.models.markov import MarkovModel
from tokenbound.validate import make_source, parse_source, run_trial, true_risk_bits, validate
from tokenbound.validate.harness import clopper_pearson


def test_parse_source_defaults_and_errors():
    assert parse_source("markov:order=2,vocab=5") == ("markov", {"order": 2, "vocab": 5, "conc": 0.5})
    assert parse_source("spiky")[1]["eps"] == 0.01
    for bad in ("nope", "markov:depth=2", "hmm:states=x", "docs:vocab=2", "spiky:eps=0"):
        with pytest.raises(TokenboundError):
            parse_source(bad)


def test_markov_source_conditionals_are_its_transition_rows():
    src = make_source("markov:order=2,vocab=4", seed=1)
    s = src.sample(np.random.default_rng(0), 500)
    trans = src.tables["trans"]
    padded = np.concatenate([[0, 0], s.tokens])
    rows = padded[:-2] * 4 + padded[1:-1]  # row of context (x_{i-2}, x_{i-1}), the older token more significant
    np.testing.assert_allclose(s.true_probs, trans[rows])


def _hmm_brute_force(src, tokens):
    """P(x_i | x_<i) by summing the joint over every hidden path (tiny streams only)."""
    trans, emit, init = src.tables["trans"], src.tables["emit"], src.tables["init"]
    s, v = emit.shape
    out = []
    for i in range(len(tokens)):
        joint = np.zeros(v)
        for path in itertools.product(range(s), repeat=i + 1):
            p = init[path[0]]
            for t in range(i + 1):
                if t:
                    p *= trans[path[t - 1], path[t]]
                if t < i:
                    p *= emit[path[t], tokens[t]]
            joint += p * emit[path[i]]
        out.append(joint / joint.sum())
    return np.array(out)


def test_hmm_source_conditionals_match_brute_force():
    src = make_source("hmm:states=2,vocab=3", seed=2)
    s = src.sample(np.random.default_rng(1), 7)
    np.testing.assert_allclose(s.true_probs, _hmm_brute_force(src, s.tokens), rtol=1e-10)


def test_docs_source_conditionals_mix_chains_by_posterior():
    src = make_source("docs:chains=3,vocab=5,len=4", seed=3)
    s = src.sample(np.random.default_rng(2), 200)
    chains, prior = src.tables["chains"], src.tables["prior"]
    assert s.doc_offsets[0] == 0 and (s.tokens[s.doc_offsets[1:] - 1] == src.eot).all()
    for i in range(200):  # brute force: P(doc prefix and next token | chain), mixed by the prior
        start = s.doc_offsets[np.searchsorted(s.doc_offsets, i, side="right") - 1]
        prefix = np.concatenate([[src.eot], s.tokens[start:i]])
        lik = prior * np.prod([chains[:, a, b] for a, b in zip(prefix[:-1], prefix[1:])], axis=0)
        want = lik @ chains[:, prefix[-1], :]
        np.testing.assert_allclose(s.true_probs[i], want / want.sum(), rtol=1e-9)
    assert s.true_probs[s.doc_offsets, src.eot].max() == 0.0  # no empty documents


def test_sources_sample_from_their_stated_conditionals():
    """Frequencies of drawn tokens agree with the mean stated conditional (a sampler/law mismatch would not)."""
    for spec in ("markov:order=1,vocab=6", "hmm:states=3,vocab=6", "docs:vocab=6", "spiky:vocab=6"):
        s = make_source(spec, seed=4).sample(np.random.default_rng(3), 20_000)
        freq = np.bincount(s.tokens, minlength=6) / 20_000
        np.testing.assert_allclose(freq, s.true_probs.mean(0), atol=0.015)
        np.testing.assert_allclose(s.true_probs.sum(1), 1.0)


def test_true_risk_matches_per_position_formula():
    src = make_source("docs:vocab=6,len=10", seed=5)
    s = src.sample(np.random.default_rng(4), 600)
    model = MarkovModel.fit(s.tokens, s.doc_offsets, 6, src.eot, 1)
    alphas = np.array([0.01, 0.5])
    risk, train = true_risk_bits(model, s.tokens, s.doc_offsets, s.true_probs, alphas)
    dist = model.next_token_probs(model.keys_for(s.tokens, s.doc_offsets))
    for a, alpha in enumerate(alphas):
        loss = -np.log2((1 - alpha) * dist + alpha / 6)
        assert risk[a] == pytest.approx((s.true_probs * loss).sum(1).mean(), rel=1e-12)
        assert train[a] == pytest.approx(loss[np.arange(600), s.tokens].mean(), rel=1e-12)
    assert train[0] < risk[0]  # the fitted model overfits its training stream


def test_clopper_pearson():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.1)
    lo, hi = clopper_pearson(5, 10)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi)


def test_valid_methods_cover_in_a_fast_configuration():
    out = validate("markov:order=1,vocab=6", trials=20, tokens=3000, samples=500, order=1, seed=7, progress=False)
    for name in ("azuma", "variance_adaptive"):
        res = out["methods"][name]
        assert res["failures"] <= 1 and res["consistent_with_delta"]
        assert 0 < res["mean_slack_bits"] < 3  # informative, not vacuous
    assert out["methods"]["variance_adaptive"]["mean_bound_bits"] < 4 * np.log2(6)


def test_broken_method_is_caught():
    """Proof that the harness can fail: the training loss without a complexity term is not a bound."""
    out = validate("markov:order=1,vocab=8", trials=20, tokens=300, samples=0, order=2, seed=8,
                   methods=["azuma", "broken"], progress=False)
    assert out["methods"]["broken"]["failure_rate"] >= 0.8
    assert out["methods"]["broken"]["failure_rate_ci95"][0] > 0.05
    assert out["methods"]["azuma"]["failures"] == 0


def test_an_invalid_certifier_is_caught():
    """A stand-in certify that reports the empirical mean with no complexity term fails most trials."""
    def fake_certify(stats, *, message_bits, delta, methods, **_):
        grid = [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5]
        emp = float(np.mean(-np.log2(0.9 * stats.prob + 0.1 / stats.meta["vocab_size"])))
        return {"inputs": {"alpha_grid": grid}, "bounds": {m: {"alpha": 0.1, "bound_bits_per_token": emp - 0.05}
                                                           for m in methods}}
    out = validate("hmm:vocab=6", trials=10, tokens=2000, samples=0, order=1, seed=9, methods=["azuma"],
                   progress=False, certify_fn=fake_certify)
    assert out["methods"]["azuma"]["failure_rate"] >= 0.8


def test_trials_are_deterministic():
    src = make_source("spiky:vocab=6", seed=10)
    kw = dict(trial_seed=123, tokens=1000, samples=200, order=1, smoothing="wb", methods=("azuma", "broken"),
              delta=0.05)
    assert run_trial(src, **kw) == run_trial(make_source("spiky:vocab=6", seed=10), **kw)


@pytest.mark.slow
def test_workers_do_not_change_results():
    kw = dict(trials=4, tokens=800, samples=100, order=1, seed=11, progress=False)
    assert validate("docs:vocab=6", workers=1, **kw) == validate("docs:vocab=6", workers=2, **kw)


def test_cli_prints_json(capsys):
    assert cli_main(["validate", "--source", "spiky:vocab=5", "--trials", "3", "--tokens", "800", "--samples",
                     "100", "--method", "azuma,broken", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 3 and set(out["methods"]) == {"azuma", "broken"}
    assert cli_main(["validate", "--method", "magic"]) == 2
    assert cli_main(["validate", "--source", "markov:vocab=1"]) == 2
