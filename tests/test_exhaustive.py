"""Exhaustive certificates (`bound --samples all`): every window of the rule once, exact empirical risk, no
subsampling term, no pilot (docs/theory.md §5)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tokenbound.bounds.certificate import is_exhaustive
from tokenbound.bounds.stats import TokenStats
from tokenbound.cli import main as cli_main
from tokenbound.data.context import ContextRule
from tokenbound.data.sampling import draw_plan
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.bound import bound
from tokenbound.evaluate.verify import verify
from tokenbound.models.markov import MarkovModel

V, EOT = 9, 0


@pytest.fixture(scope="module")
def markov_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("exh")
    rng = np.random.default_rng(3)
    toks = rng.integers(1, V, 3000)
    toks[rng.choice(3000, 40, replace=False)] = EOT
    toks[-1] = EOT
    offsets = np.concatenate([[0], np.flatnonzero(toks == EOT)[:-1] + 1])
    write_store(root / "store", toks, offsets, V, EOT)
    assert cli_main(["markov", "--data", str(root / "store"), "--order", "1", "--out", str(root / "m")]) == 0
    return root, toks, offsets


@pytest.mark.parametrize("rule", ["doc:16/8", "stream:12/5", "doc:4"])
def test_exhaustive_certificate_has_the_exact_empirical_risk_and_no_subsampling_term(markov_case, rule):
    root, toks, offsets = markov_case
    out = root / f"cert-{rule.replace(':', '_').replace('/', '_')}.json"
    cert = bound(root / "m", root / "store", out, samples="all", sampler="block", context=rule, progress=False)
    r = ContextRule.parse(rule)
    assert cert.sample.exhaustive is True
    assert cert.sample.sample_size == len(toks)  # every position, as its own draw
    model = MarkovModel.fit(toks, offsets, V, EOT, 1)
    p = model.true_token_probs(toks, offsets)  # every window sees >= order tokens, so the rule changes nothing
    for name, b in cert.bounds.items():
        assert b.terms.subsample_bits == 0.0, name
        alpha = b.alpha
        exact = float(np.mean(-np.log2((1 - alpha) * p + alpha / V)))
        assert b.terms.empirical_bits == pytest.approx(exact, rel=1e-12), name
        assert b.pilot is None and "pilot" not in b.to_json()
    assert verify(out) == []


def test_the_all_sampler_covers_every_position_once():
    rule = ContextRule.parse("doc:16/8")
    plan = draw_plan("all", rule.num_windows(0, 100), 0, rule, 100, np.array([0, 30]))
    assert np.array_equal(plan.units, np.arange(plan.n))
    with pytest.raises(TokenboundError, match="^samples"):
        draw_plan("all", 5, 0, rule, 100, np.array([0, 30]))


def test_block_draws_with_repeats_are_not_exhaustive():
    meta = {"sampler": "block", "context_rule": "doc:4/2", "seed": 0, "population_tokens": 4, "vocab_size": 3}
    stats = TokenStats(np.array([0, 1, 2, 3]), np.full(4, 0.5), np.ones(4), np.ones(4), np.array([0, 0, 1, 1]),
                       meta=meta)
    assert not is_exhaustive(stats)  # the block sampler draws with replacement: no exactness claim
    stats.meta = {**meta, "sampler": "all"}
    assert is_exhaustive(stats)
    stats.positions = np.array([0, 1, 1, 3])
    assert not is_exhaustive(stats)


def test_exhaustive_flags(markov_case, capsys):
    root, _, _ = markov_case
    base = ["bound", "--markov", str(root / "m"), "--data", str(root / "store"), "--context", "doc:16/8",
            "--sampler", "block"]
    assert cli_main(base + ["--samples", "all", "--pilot-draws", "5", "--out", str(root / "x.json")]) == 2
    assert "--pilot-draws" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli_main(base + ["--samples", "most", "--out", str(root / "y.json")])
    assert e.value.code == 2 and "--samples" in capsys.readouterr().err
    assert cli_main(base + ["--samples", "all", "--out", str(root / "z.json")]) == 0
    cert = json.loads((root / "z.json").read_text())
    assert cert["inputs"]["exhaustive"] and cert["inputs"]["sampler"] == "all"
