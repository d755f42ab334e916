"""`tokenbound verify` re-scores a random subset of the certificate's draws with the model (evaluate/rescore.py)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch

from tokenbound.bounds.certificate import recompute
from tokenbound.bounds.stats import TokenStats
from tokenbound.cli import main
from tokenbound.data.store import TokenStore
from tokenbound.evaluate.bound import bound, load_stats, stats_path
from tokenbound.evaluate.rescore import choose_draws, rescore_stats
from tokenbound.evaluate.verify import verify
from tokenbound.models.loading import load
from tokenbound.models.markov_fit import fit_store


@pytest.fixture(scope="module")
def root(tmp_path_factory, periodic_store):
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("rescore")
    periodic_store(d / "store")
    train(d / "store", d / "run", preset="tiny", seed=0, steps=5, progress=False)
    assert main(["compress", "--run", str(d / "run"), "--method", "quant:levels=11", "--out", str(d / "cm")]) == 0
    fit_store(d / "store", 1, d / "markov")
    # a neural model under the block sampler, with the document-level baseline; a Markov chain under tokens
    bound(d / "cm", d / "store", d / "gpt.json", samples=60, sampler="block", context="doc:32/16", doc_samples=8,
          progress=False)
    bound(d / "markov", d / "store", d / "mk.json", samples=300, progress=False)
    return d


def _forge_stats(cert_path, key="stats", edit=None):
    """Edit the statistics behind `key`, fix their sha256 in the certificate and recompute every bound."""
    cert = json.loads(cert_path.read_text())
    path = stats_path(cert, cert_path, key)
    stats = TokenStats.load(path)
    (edit or (lambda s: setattr(s, "prob", np.maximum(s.prob, 0.999))))(stats)
    stats.save(path)
    cert[key]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    new = recompute(cert, load_stats(cert, cert_path), load_stats(cert, cert_path, "document_stats")).to_json()
    cert_path.write_text(json.dumps(new))
    return new


def _copy(root, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    return copy


def test_honest_certificates_pass_with_default_and_full_rescore(root, capsys):
    for cert in ("gpt.json", "mk.json"):
        report = []
        assert verify(root / cert, report=report) == []
        assert any(re.search(r"stats: re-scored 32 of (60|300) draws", line) for line in report), report
        report = []
        assert verify(root / cert, rescore=None, report=report) == []
        assert any(re.search(r"stats: re-scored (60|300) of (60|300) draws", line) for line in report), report
    capsys.readouterr()
    assert main(["verify", str(root / "gpt.json"), "--rescore", "all"]) == 0
    out = capsys.readouterr().out
    assert "re-scored 60 of 60 draws" in out and "document_stats: re-scored 8 of 8 draws" in out
    assert "rescore seed" in out and "re-scored draws" in out


def test_raised_probabilities_fail_verify_naming_the_first_mismatch(root, tmp_path, capsys):
    copy = _copy(root, tmp_path)
    honest = json.loads((copy / "mk.json").read_text())
    forged = _forge_stats(copy / "mk.json")
    assert forged["bound_bits_per_token"] < honest["bound_bits_per_token"] - 0.5
    problems = verify(copy / "mk.json")
    assert any(re.match(r"stats: draw \d+, stream position \d+: prob stored 0\.999 vs recomputed", p)
               for p in problems), problems
    # the statistics' hashes and bounds all re-check: only re-scoring catches it
    assert not any(p.startswith(("bounds", "stats: file")) for p in problems)
    capsys.readouterr()
    assert main(["verify", str(copy / "mk.json"), "--rescore", "5"]) == 1
    assert "prob stored 0.999" in capsys.readouterr().err


def test_neural_model_statistics_and_document_stats_are_rescored(root, tmp_path):
    copy = _copy(root, tmp_path)
    _forge_stats(copy / "gpt.json", "document_stats",
                 lambda s: setattr(s, "entropy_bits", s.entropy_bits + 0.01 * (s.draw == 3)))
    problems = verify(copy / "gpt.json", rescore=None)
    assert len(problems) == 1 and re.match(r"document_stats: draw 3, stream position \d+: entropy_bits stored",
                                           problems[0]), problems


def test_a_changed_rank_fails_verify(root, tmp_path):
    copy = _copy(root, tmp_path)

    def bump(s):
        s.rank = s.rank.copy()
        s.rank[s.draw == 7] += 1

    _forge_stats(copy / "gpt.json", edit=bump)
    assert any(re.match(r"stats: draw 7, stream position \d+: rank stored", p)
               for p in verify(copy / "gpt.json", rescore=None))


def test_positions_not_from_the_recorded_seed_fail_verify(root, tmp_path):
    copy = _copy(root, tmp_path)

    def move(s):  # an honest-looking draw at another position
        s.positions = s.positions.copy()
        s.positions[5] = (s.positions[5] + 1) % int(s.meta["population_tokens"])

    _forge_stats(copy / "mk.json", edit=move)
    assert any("not the ones the recorded sampler, rule and seed give" in p and "entry 5" in p
               for p in verify(copy / "mk.json", rescore=1))


def test_skipping_is_reported_as_not_rescored(root, tmp_path, capsys):
    copy = _copy(root, tmp_path)
    _forge_stats(copy / "mk.json")
    for argv in (["--rescore", "0"], ["--skip-model"]):
        capsys.readouterr()
        assert main(["verify", str(copy / "mk.json"), *argv]) == 0
        out = capsys.readouterr().out
        assert "NOT re-scored" in out and ("--rescore 0" in out or "--skip-model" in out)
    report = []
    assert verify(copy / "mk.json", check_model=False, report=report) == [] and "NOT re-scored" in report[0]


def test_draws_come_from_the_given_seed_or_fresh_randomness(root):
    store = TokenStore.open(root / "store")
    stats = TokenStats.load(root / "mk.stats" / "tokenstats.npz")
    model = load(root / "markov")
    a = rescore_stats(model, stats, store, 10, seed=123)
    b = rescore_stats(model, stats, store, 10, seed=123)
    assert a.problems == [] and np.array_equal(a.draws, b.draws) and a.draws.size == 10
    assert np.array_equal(a.draws, choose_draws(300, 10, 123))
    seeds = {rescore_stats(model, stats, store, 1).seed for _ in range(3)}
    assert len(seeds) == 3 and stats.meta["seed"] not in seeds


@pytest.mark.parametrize("argv, flag", [(["--rescore", "some"], "--rescore"), (["--rescore", "-3"], "--rescore"),
                                        (["--rescore-tol", "-1"], "--rescore-tol")])
def test_bad_rescore_flags_are_one_line_errors(root, capsys, argv, flag):
    assert main(["verify", str(root / "mk.json"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1


def test_rank_interval_allows_near_ties_only():
    from tokenbound.evaluate.rescore import rank_interval

    logp = np.log2(np.array([0.3, 0.2, 0.2 + 1e-9, 0.2, 0.1, 0.2 - 1e-9]))
    # token 3: token 0 above; token 1 exactly tied with a lower id (counts); tokens 2 and 5 within 1e-6 bits
    assert rank_interval(logp, 3, 1e-6) == (3, 5)
    assert rank_interval(logp, 3, 0.0) == (4, 4)  # no tolerance: the scorer's rank exactly
    assert rank_interval(logp, 3, 1e-6, id_ties=False) == (2, 5)  # statistics ranked before id tie-breaking
    assert rank_interval(logp, 0, 1e-6) == (1, 1)


def test_markov_ties_are_ranked_exactly(root, tmp_path):
    copy = _copy(root, tmp_path)
    fit_store(copy / "store", 2, copy / "add", smoothing="add:0.5")  # equal counts give exactly equal probabilities
    bound(copy / "add", copy / "store", copy / "add.json", samples=200, progress=False)
    stats = TokenStats.load(copy / "add.stats" / "tokenstats.npz")
    assert stats.meta["rank_rule"] == "prob_desc_id_asc"  # the scorer always ranks ties by id now
    assert verify(copy / "add.json", rescore=None) == []
    model = load(copy / "add")
    store = TokenStore.open(root / "store")
    keys = model.keys_for(np.asarray(store.tokens), store.doc_offsets, stats.positions)
    dist = model.next_token_probs(keys)
    true = np.asarray(store.tokens)[stats.positions]
    lower_ties = ((dist == dist[np.arange(true.size), true][:, None])
                  & (np.arange(dist.shape[1])[None, :] < true[:, None])).sum(1)
    i = int(np.flatnonzero(lower_ties > 0)[0])  # a position whose true token ties with a lower id

    def claim_first_among_ties(s):
        s.rank = s.rank.copy()
        s.rank[i] -= lower_ties[i]

    _forge_stats(copy / "add.json", edit=claim_first_among_ties)
    assert any(f"draw {int(stats.draw[i])}" in p and "rank stored" in p
               for p in verify(copy / "add.json", rescore=None))


@pytest.mark.parametrize("kw", [{"rescore": -1}, {"rescore": 2.5}, {"rescore_tol": float("nan")}])
def test_bad_rescore_arguments_are_refused_before_any_work(root, kw):
    from tokenbound.errors import TokenboundError

    with pytest.raises(TokenboundError, match="rescore"):
        verify(root / "missing.json", **kw)  # refused before the certificate is even read
