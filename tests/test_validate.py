"""Monte Carlo validity harness (validate/): exact sources, exact true risk, coverage, and a harness that can fail."""
from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest

from tokenbound.cli import main as cli_main
from tokenbound.errors import TokenboundError
from tokenbound.models.markov import MarkovModel
from tokenbound.validate import make_source, parse_source, run_trial, true_risk_bits, true_top_k_risk, validate
from tokenbound.validate.harness import clopper_pearson


def test_parse_source_defaults_and_errors():
    assert parse_source("markov:order=2,vocab=5") == ("markov", {"order": 2, "vocab": 5, "conc": 0.5})
    assert parse_source("spiky")[1]["eps"] == 0.01
    assert parse_source("shuffle:vocab=5") == ("shuffle", {"vocab": 5, "copies": 1})
    for bad in ("nope", "markov:depth=2", "hmm:states=x", "docs:vocab=2", "spiky:eps=0", "shuffle:copies=0",
                "shuffle:copies=1.5"):
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
    for spec in ("markov:order=1,vocab=6", "hmm:states=3,vocab=6", "docs:vocab=6", "spiky:vocab=6",
                 "shuffle:vocab=6,copies=3"):
        s = make_source(spec, seed=4).sample(np.random.default_rng(3), 20_000)
        freq = np.bincount(s.tokens, minlength=6) / 20_000
        np.testing.assert_allclose(freq, s.true_probs.mean(0), atol=0.015)
        np.testing.assert_allclose(s.true_probs.sum(1), 1.0)


def test_shuffle_source_conditionals_are_the_ids_left_in_the_round():
    src = make_source("shuffle:vocab=4,copies=2", seed=0)
    s = src.sample(np.random.default_rng(5), 8 * 50 + 3)
    for r in range(51):  # every complete round holds each id exactly `copies` times
        block = s.tokens[8 * r:8 * r + 8]
        if block.size == 8:
            assert np.bincount(block, minlength=4).tolist() == [2, 2, 2, 2]
        for j in range(block.size):  # brute force: copies left / tokens left in the round
            left = 2 - np.bincount(block[:j], minlength=4)
            np.testing.assert_allclose(s.true_probs[8 * r + j], left / left.sum(), rtol=1e-15)


def test_true_top_k_risk_matches_per_position_prediction_sets():
    """R_k = mean over positions of P_true(x_i not in S_k(c_i)), S_k the k first ids in (p desc, id asc) order."""
    for spec, order in (("shuffle:vocab=6", 0), ("shuffle:vocab=6", 1), ("docs:vocab=6,len=10", 1)):
        src = make_source(spec, seed=5)
        s = src.sample(np.random.default_rng(4), 602)
        model = MarkovModel.fit(s.tokens, s.doc_offsets, 6, src.eot, order, "add:1")
        risk, train = true_top_k_risk(model, s.tokens, s.doc_offsets, s.true_probs, (1, 2, 6))
        dist = model.next_token_probs(model.keys_for(s.tokens, s.doc_offsets))
        want, want_train = np.zeros(3), np.zeros(3)
        for i in range(602):
            order_i = sorted(range(6), key=lambda v: (-dist[i, v], v))
            for j, k in enumerate((1, 2, 6)):
                outside = order_i[k:]
                want[j] += s.true_probs[i, outside].sum() / 602
                want_train[j] += (s.tokens[i] in outside) / 602
        np.testing.assert_allclose(risk, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(train, want_train, rtol=1e-12, atol=1e-15)
        assert risk[2] == 0.0
    # a fitted unigram on whole rounds ties every id: S_1 = {0}, and the exact top-1 risk is 1 - 1/V
    src = make_source("shuffle:vocab=6", seed=5)
    s = src.sample(np.random.default_rng(4), 600)
    model = MarkovModel.fit(s.tokens, s.doc_offsets, 6, src.eot, 0, "add:1")
    risk, train = true_top_k_risk(model, s.tokens, s.doc_offsets, s.true_probs, (1,))
    assert train[0] == pytest.approx(5 / 6) and abs(risk[0] - 5 / 6) < 0.02


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
    for k in ("1", "3"):
        res = out["top_k"][k]
        assert res["failures"] <= 1 and res["consistent_with_delta"]
        assert 0 < res["mean_true_risk"] < res["mean_bound"] <= res["mean_true_risk"] + 0.5


def test_top_k_bounds_cover_on_a_source_with_exact_ties():
    """On the shuffle source a fitted unigram ties every id; the top-k bound must cover the error of the real
    k-token prediction (ties by id), about 1 - k/V. Crediting ties to the model made every trial fail."""
    out = validate("shuffle:vocab=6", trials=12, tokens=3000, samples=600, order=0, smoothing="add:1", seed=3,
                   methods=["azuma"], top_k=(1, 2), progress=False)
    for k in (1, 2):
        res = out["top_k"][str(k)]
        assert res["failures"] == 0, res
        assert res["mean_true_risk"] == pytest.approx(1 - k / 6, abs=0.01)
        assert res["mean_train_error"] == pytest.approx(1 - k / 6, abs=1e-12)


def test_a_scorer_that_credits_ties_is_caught(monkeypatch):
    """Proof that the top-k check can fail: ranks counting ties as correct (1 + #{p > p_true}) give top-k
    bounds far below the real prediction's risk on the tie source."""
    def in_favour(self, tokens, doc_offsets, positions=None):
        pos = np.arange(len(tokens)) if positions is None else np.asarray(positions)
        dist = self.next_token_probs(self.keys_for(tokens, doc_offsets, pos))
        p_true = dist[np.arange(pos.size), np.asarray(tokens)[pos]]
        ent = -(dist * np.log2(dist)).sum(1)
        return p_true, 1 + (dist > p_true[:, None]).sum(1), ent

    monkeypatch.setattr(MarkovModel, "score_positions", in_favour)
    out = validate("shuffle:vocab=6", trials=8, tokens=3000, samples=600, order=0, smoothing="add:1", seed=3,
                   methods=["azuma"], top_k=(1,), progress=False)
    assert out["top_k"]["1"]["failure_rate"] == 1.0 and not out["top_k"]["1"]["consistent_with_delta"]


def test_broken_method_is_caught():
    """Proof that the harness can fail: the training loss without a complexity term is not a bound."""
    out = validate("markov:order=1,vocab=8", trials=20, tokens=300, samples=0, order=2, seed=8,
                   methods=["azuma", "broken"], progress=False)
    assert out["methods"]["broken"]["failure_rate"] >= 0.8
    assert out["methods"]["broken"]["failure_rate_ci95"][0] > 0.05
    assert out["methods"]["azuma"]["failures"] == 0


def test_an_invalid_certifier_is_caught():
    """A stand-in certify that reports the empirical mean with no complexity term fails most trials."""
    def fake_certify(stats, inputs):
        grid = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5)
        emp = float(np.mean(-np.log2(0.9 * stats.prob + 0.1 / stats.meta["vocab_size"])))
        return SimpleNamespace(inputs=SimpleNamespace(alpha_grid=grid), bounds={
            m: SimpleNamespace(alpha=0.1, bound_bits_per_token=emp - 0.05) for m in inputs.methods})
    out = validate("hmm:vocab=6", trials=10, tokens=2000, samples=0, order=1, seed=9, methods=["azuma"],
                   progress=False, certify_fn=fake_certify, top_k=())
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


def test_cli_prints_tables_or_json(capsys):
    argv = ["validate", "--source", "spiky:vocab=5", "--trials", "3", "--tokens", "800", "--samples", "100",
            "--method", "azuma,broken", "--seed", "1", "--top-k", "1,2"]
    assert cli_main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 3 and set(out["methods"]) == {"azuma", "broken"} and set(out["top_k"]) == {"1", "2"}
    assert cli_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line and line.split()[0] in ("azuma", "top-2")}
    e = out["methods"]["azuma"]
    assert rows["azuma"][1] == f"{e['failures']}/3" and rows["azuma"][5] == f"{e['mean_bound_bits']:.4f}"
    assert rows["top-2"][5] == f"{out['top_k']['2']['mean_bound']:.4f}"
    assert cli_main(argv + ["--top-k", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top_k"] == {}
    for bad in (["--method", "magic"], ["--source", "markov:vocab=1"], ["--top-k", "0"], ["--top-k", "one"]):
        assert cli_main(["validate"] + bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad[0] in err[0], err
