"""Top-k error with tied scores: the certified quantity is the error of a real k-token prediction set.

S_k(c) = the k tokens first in (probability desc, id asc) order (docs/theory.md §8), so a token tied with the
true one counts against it when its id is lower. Before, every tie counted in the model's favour, and a
uniform model was certified a top-1 error near 0 while its real error is 1 − 1/V.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tokenbound.bounds.certificate import certify, compare, recompute
from tokenbound.bounds.schema import CertifyInputs
from tokenbound.bounds.stats import TokenStats
from tokenbound.bounds.topk import RANK_RULE, rank_table, tie_broken_rank, top_k_losses
from tokenbound.cli import main as cli_main
from tokenbound.data.store import TokenStore, write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.score import score
from tokenbound.models.markov import MarkovModel


def brute_rank(row, true):
    order = sorted(range(len(row)), key=lambda v: (-row[v], v))
    return order.index(true) + 1


def test_rank_helpers_agree_with_sorting_by_prob_then_id():
    rng = np.random.default_rng(0)
    dist = rng.integers(0, 4, size=(200, 9)).astype(np.float64)  # few distinct values: ties everywhere
    dist[:, 0] = np.where(rng.random(200) < 0.3, 0.0, dist[:, 0])
    true = rng.integers(0, 9, 200)
    want = np.array([brute_rank(dist[j].tolist(), int(true[j])) for j in range(200)])
    np.testing.assert_array_equal(tie_broken_rank(dist, true), want)
    table = rank_table(dist)
    np.testing.assert_array_equal(table[np.arange(200), true], want)
    assert (np.sort(table, axis=1) == np.arange(1, 10)).all()  # a permutation: one token per place
    # each k-set has exactly k tokens, whatever the ties
    for k in (1, 3, 8):
        assert ((table <= k).sum(1) == k).all()
    np.testing.assert_array_equal(top_k_losses(want, [1])[0], (want > 1).astype(float))


def test_markov_scoring_breaks_exact_ties_by_id():
    """An order-0 add-1 model on equally frequent ids: all tied, so id j is at place j (eot 0 is rarer)."""
    v = 9
    toks = np.concatenate([np.random.default_rng(1).permutation(np.repeat(np.arange(1, v), 5)), [0]])
    model = MarkovModel.fit(toks, np.zeros(1, np.int64), v, 0, 0, "add:1")
    prob, rank, _ = model.score_positions(toks, np.zeros(1, np.int64))
    assert np.unique(prob[toks > 0]).size == 1  # exactly tied
    np.testing.assert_array_equal(rank[toks > 0], toks[toks > 0])
    assert (rank[toks == 0] == v).all()
    assert (rank == 1).mean() == pytest.approx(5 / toks.size)  # only id 1 is top-1 correct


def _gpt_with_quantized_tied_head(vocab, tied):
    """A tiny GPT whose head rows for `tied` are near zero, so a codebook quantizer (zero is always a level)
    makes them exactly zero: those logits are exactly equal at every position."""
    from tokenbound.coding.quantize import QuantConfig, decoded_state, quantize_state
    from tokenbound.models import gpt

    cfg = gpt.GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16, eot=0,
                        tie_embeddings=False)
    module = gpt.build_model(cfg)
    with torch.no_grad():
        module.lm_head.weight[tied] *= 1e-4
        q = quantize_state({"lm_head.weight": module.lm_head.weight.detach()}, QuantConfig(levels=5))
        module.lm_head.weight.copy_(decoded_state(q)["lm_head.weight"])
    assert (module.lm_head.weight[tied] == 0).all() and (module.lm_head.weight.abs().sum(1) > 0).sum() > 2
    return gpt.GPTLanguageModel(module, cfg)


def test_quantized_model_with_tied_logits_is_scored_by_the_lower_id_rule(tmp_path):
    vocab, tied = 11, [2, 3, 5, 7, 8]
    rng = np.random.default_rng(2)
    toks = np.concatenate([np.append(rng.integers(1, vocab, 40), 0) for _ in range(6)])
    store = write_store(tmp_path / "s", toks, np.arange(6) * 41, vocab, 0)
    model = _gpt_with_quantized_tied_head(vocab, tied)
    stats = score(model, store, "doc:16", "token", 150, seed=0, out_dir=tmp_path / "st", batch_size=16,
                  progress=False)
    # reference: the model's own float64-renormalised distributions, sorted by (p desc, id asc)
    tokens = np.asarray(store.tokens)
    old_rank, in_tie = [], []
    for i, r in zip(stats.positions, stats.rank):
        last_eot = np.append(-1, np.flatnonzero(tokens[:i] == 0))[-1]  # -1: the virtual eot
        row = np.append(0, tokens[last_eot + 1:i])[-16:]  # the doc:16 context
        with torch.no_grad():
            p = torch.softmax(model.log_probs(torch.from_numpy(row)[None])[0, -1].double(), -1).numpy()
        t = int(tokens[i])
        assert r == brute_rank(p.tolist(), t), (i, t)
        assert np.unique(p[tied]).size == 1  # the quantized head really ties them
        old_rank.append(1 + int((p > p[t]).sum()))
        in_tie.append(t in tied and t != tied[0])
    in_tie = np.array(in_tie)
    assert in_tie.sum() >= 20
    # where the true token is tied with a lower id, it is placed after it: the old count was in its favour
    assert (stats.rank[in_tie] > np.array(old_rank)[in_tie]).all()
    assert (stats.rank[~in_tie] == np.array(old_rank)[~in_tie]).all()
    assert stats.meta["rank_rule"] == RANK_RULE


def test_rank_rule_is_recorded_and_old_statistics_still_verify(tmp_path):
    vocab = 5
    toks = np.array([1, 2, 3, 4, 0] * 20)
    store = write_store(tmp_path / "s", toks, np.arange(20) * 5, vocab, 0)
    model = MarkovModel.fit(toks, np.arange(20) * 5, vocab, 0, 0, "add:1")
    stats = score(model, store, "doc:1", "token", 60, seed=3, out_dir=tmp_path / "st", progress=False)
    assert stats.meta["rank_rule"] == RANK_RULE
    cert = certify(stats, CertifyInputs(message_bits=100.0, top_k=(1, 2)))
    assert cert.top_k[1].rank_rule == RANK_RULE and cert.to_json()["top_k"]["1"]["rank_rule"] == RANK_RULE
    assert compare(cert, recompute(cert, stats)) == []
    # statistics scored before the rule was recorded: their certificates recompute unchanged
    old = TokenStats(stats.positions, stats.prob, stats.rank, stats.entropy_bits, stats.draw,
                     meta={k: v for k, v in stats.meta.items() if k != "rank_rule"})
    old_cert = certify(old, CertifyInputs(message_bits=100.0, top_k=(1, 2)))
    assert "rank_rule" not in old_cert.to_json()["top_k"]["1"]
    assert compare(old_cert, recompute(old_cert, old)) == []
    # a shard directory written under another (older) rank rule is refused, not mixed in
    plan = tmp_path / "st" / "plan.json"
    found = json.loads(plan.read_text())
    del found["fingerprint"]["rank_rule"]
    from tokenbound.evaluate.shards import fingerprint_sha256

    found["fingerprint_sha256"] = fingerprint_sha256(found["fingerprint"])
    plan.write_text(json.dumps(found))
    with pytest.raises(TokenboundError, match="rank_rule"):
        score(model, store, "doc:1", "token", 60, seed=3, out_dir=tmp_path / "st", progress=False)


def test_cli_bound_on_equally_frequent_ids_certifies_the_real_top1_error(tmp_path, capsys):
    """The reproduction: 63 ids equally often in random order, an order-0 add-1 Markov model (all tied).

    Its real top-1 prediction is one fixed token, so its top-1 error is 62/63 on the data; the certified
    bound must not be below that (before, ties counted as correct and the bound was far below it).
    """
    ids = np.random.default_rng(0).permutation(np.repeat(np.arange(1, 64), 30)).astype(np.int64)
    np.save(tmp_path / "ids.npy", ids)
    store, mk, cert_path = tmp_path / "store", tmp_path / "mk", tmp_path / "cert.json"
    assert cli_main(["prepare", "--corpus", f"tokens:{tmp_path}/ids.npy", "--vocab-size", "64", "--eot", "0",
                     "--out", str(store)]) == 0
    assert cli_main(["markov", "--data", str(store), "--order", "0", "--smoothing", "add:1", "--out", str(mk)]) == 0
    assert cli_main(["bound", "--markov", str(mk), "--data", str(store), "--out", str(cert_path),
                     "--samples", "1500"]) == 0
    capsys.readouterr()
    cert = json.loads(cert_path.read_text())
    tokens = np.asarray(TokenStore.open(store).tokens)
    # the prediction: id 1 (first of the 63 tied ids); eot (one occurrence, less probable) is never predicted
    empirical_error = float(np.mean(tokens != 1))
    assert empirical_error == pytest.approx((62 * 30 + 1) / (63 * 30 + 1))
    assert cert["top_k_error_bounds"]["1"] >= empirical_error
    stats = TokenStats.load(tmp_path / "cert.stats" / "tokenstats.npz")
    true = tokens[stats.positions]
    np.testing.assert_array_equal(stats.rank, np.where(true == 0, 64, true))
    assert cert["top_k"]["1"]["terms"]["empirical_bits"] == pytest.approx(float(np.mean(true != 1)))
