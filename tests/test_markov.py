"""Markov-chain model (models/markov*.py): counts, smoothing, doc-rule contexts, code, artifacts, interface."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

import tokenbound
from tokenbound.cli import main as cli_main
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.models.base import segments_from_ids
from tokenbound.models.markov import MarkovModel
from tokenbound.models.markov_fit import load_markov

V, EOT = 7, 0


def make_stream(seed=0, m=400, doc_every=37):
    rng = np.random.default_rng(seed)
    toks = rng.integers(1, V, m)
    toks[doc_every - 1::doc_every] = EOT
    toks[-1] = EOT
    offsets = np.concatenate([[0], np.flatnonzero(toks == EOT)[:-1] + 1])
    return toks, offsets


def naive_contexts(toks, offsets, order):
    """Doc-rule contexts by brute force: the tokens since (and including) the eot opening the document."""
    starts = set(int(o) for o in offsets)
    out, ctx = [], [EOT]
    for i, x in enumerate(toks):
        if i in starts:
            ctx = [EOT]
        out.append(tuple(ctx[-order:]) if order else ())
        ctx.append(int(x))
    return out


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_witten_bell_matches_naive_reference(order):
    """Interpolated Witten–Bell from Python dicts, independent of the vectorised implementation; a short
    context (document start) is its own padded context at every order it does not reach."""
    toks, offsets = make_stream()
    ctxs = naive_contexts(toks, offsets, order)
    counts = [defaultdict(Counter) for _ in range(order + 1)]
    for c, x in zip(ctxs, toks):
        padded = ("PAD",) * (order - len(c)) + c
        for j in range(order + 1):
            counts[j][padded[order - j:]][int(x)] += 1

    def prob(c, v):
        padded = ("PAD",) * (order - len(c)) + c
        p = 1.0 / V
        for j in range(order + 1):
            table = counts[j].get(padded[order - j:])
            if table:
                n, t = sum(table.values()), len(table)
                p = (table[v] + t * p) / (n + t)
        return p

    model = MarkovModel.fit(toks, offsets, V, EOT, order)
    got = model.true_token_probs(toks, offsets)
    want = np.array([prob(c, int(x)) for c, x in zip(ctxs, toks)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    dist = model.next_token_probs(model.keys_for(toks, offsets))
    np.testing.assert_allclose(dist.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(dist[np.arange(toks.size), toks], want, rtol=1e-12)


def test_additive_smoothing_matches_formula():
    toks, offsets = make_stream(1)
    model = MarkovModel.fit(toks, offsets, V, EOT, 2, smoothing="add:0.5")
    ctxs = naive_contexts(toks, offsets, 2)
    table = defaultdict(Counter)
    for c, x in zip(ctxs, toks):
        table[c][int(x)] += 1
    want = [(table[c][int(x)] + 0.5) / (sum(table[c].values()) + 0.5 * V) for c, x in zip(ctxs, toks)]
    np.testing.assert_allclose(model.true_token_probs(toks, offsets), want, rtol=1e-12)
    unseen = model.next_token_probs(np.array([123456]))
    np.testing.assert_allclose(unseen, 1.0 / V)


def test_contexts_restart_at_documents():
    toks = np.array([3, 4, EOT, 5, 6, 2, EOT])
    offsets = np.array([0, 3])
    model = MarkovModel.fit(toks, offsets, V, EOT, 2)
    keys = model.keys_for(toks, offsets)
    base = V + 1
    pad = V
    # position 0: context [eot]; 1: [eot, 3]; 3 (first of doc 2): [eot]; 4: [eot, 5]; 5: [5, 6]
    assert keys[0] == EOT + pad * base
    assert keys[1] == 3 + EOT * base
    assert keys[3] == keys[0]
    assert keys[4] == 5 + EOT * base
    assert keys[5] == 6 + 5 * base


def test_code_round_trip_and_message_length():
    toks, offsets = make_stream(2, m=2000)
    for order, smoothing in [(0, "wb"), (2, "wb"), (3, "add:1")]:
        model = MarkovModel.fit(toks, offsets, V, EOT, order, smoothing)
        data = model.encode()
        back = MarkovModel.decode(data)
        assert back.encode() == data
        assert (back.order, back.smoothing, back.vocab_size, back.eot) == (order, smoothing, V, EOT)
        np.testing.assert_array_equal(back.table.keys, model.table.keys)
        np.testing.assert_array_equal(back.table.cnt, model.table.cnt)
        np.testing.assert_array_equal(back.true_token_probs(toks, offsets), model.true_token_probs(toks, offsets))
        assert model.payload_bits == 8 * len(data)
        b = model.payload_bits
        assert model.message_bits == b + 2 * (b.bit_length() - 1) + 1
    # more parameters cost more bits
    bits = [MarkovModel.fit(toks, offsets, V, EOT, k).message_bits for k in (0, 1, 2, 3)]
    assert bits == sorted(bits) and bits[0] < bits[-1]


def test_corrupted_code_is_rejected():
    toks, offsets = make_stream(3)
    data = bytearray(MarkovModel.fit(toks, offsets, V, EOT, 2).encode())
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x21
        with pytest.raises(TokenboundError):
            MarkovModel.decode(bytes(bad))


def test_log_probs_with_segments_equals_doc_rule_scoring():
    toks, offsets = make_stream(4, m=300)
    model = MarkovModel.fit(toks, offsets, V, EOT, 2)
    ids = torch.from_numpy(np.concatenate([[EOT], toks[:-1]])).long()[None]  # virtual eot, then the stream
    lp = model.log_probs(ids, segments=segments_from_ids(ids, EOT))
    assert lp.shape == (1, toks.size, V)
    got = lp[0, torch.arange(toks.size), torch.from_numpy(toks).long()].exp().numpy()
    np.testing.assert_allclose(got, model.true_token_probs(toks, offsets), rtol=1e-12)
    # without segments the context runs across documents: a different model of the same stream
    lp_stream = model.log_probs(ids)
    assert not torch.allclose(lp, lp_stream)


def test_score_positions_rank_and_entropy():
    toks, offsets = make_stream(5)
    model = MarkovModel.fit(toks, offsets, V, EOT, 1)
    pos = np.array([0, 5, 17, 17, 399])
    prob, rank, ent = model.score_positions(toks, offsets, pos)
    dist = model.next_token_probs(model.keys_for(toks, offsets, pos))
    p_true = dist[np.arange(pos.size), toks[pos]]
    np.testing.assert_allclose(prob, p_true)
    np.testing.assert_array_equal(rank, 1 + (dist > p_true[:, None]).sum(1))
    np.testing.assert_allclose(ent, -(dist * np.log2(dist)).sum(1))


def test_save_load_and_cli(tmp_path, capsys):
    toks, offsets = make_stream(6, m=1000)
    store = write_store(tmp_path / "store", toks, offsets, V, EOT)
    assert cli_main(["markov", "--data", str(tmp_path / "store"), "--order", "2", "--out", str(tmp_path / "m")]) == 0
    summary = json.loads(capsys.readouterr().out)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert man["kind"] == "tokenbound.markov_model" and man["source_store_sha256"] == store.sha256
    assert summary["message_bits"] == man["message_bits"]
    loaded = tokenbound.load(tmp_path / "m")
    assert isinstance(loaded, MarkovModel) and loaded.message_bits == man["message_bits"]
    direct = MarkovModel.fit(toks, offsets, V, EOT, 2)
    np.testing.assert_array_equal(loaded.true_token_probs(toks, offsets), direct.true_token_probs(toks, offsets))
    # refuses to overwrite; a tampered bitstream is caught
    assert cli_main(["markov", "--data", str(tmp_path / "store"), "--order", "2", "--out", str(tmp_path / "m")]) == 2
    blob = bytearray((tmp_path / "m" / "model.tbm").read_bytes())
    blob[3] ^= 1
    (tmp_path / "m" / "model.tbm").write_bytes(bytes(blob))
    with pytest.raises(TokenboundError):
        load_markov(tmp_path / "m")


def test_bad_arguments():
    toks, offsets = make_stream()
    with pytest.raises(TokenboundError):
        MarkovModel.fit(toks, offsets, V, EOT, 2, smoothing="kn")
    with pytest.raises(TokenboundError):
        MarkovModel.fit(toks, offsets, V, EOT, -1)
    with pytest.raises(TokenboundError):
        MarkovModel.fit(toks + V, offsets, V, EOT, 1)
    with pytest.raises(TokenboundError):
        MarkovModel.fit(toks, offsets, 50_000, EOT, 5)


def test_keys_from_rows_match_stream_keys():
    toks = np.array([3, 4, 5, EOT, 6, 2, EOT])
    offsets = np.array([0, 4])
    model = MarkovModel.fit(toks, offsets, V, EOT, 3)
    rows = [[V, V, EOT], [V, EOT, 3], [EOT, 3, 4], [3, 4, 5], [V, V, EOT], [V, EOT, 6], [EOT, 6, 2]]
    np.testing.assert_array_equal(model.keys_from_rows(rows), model.keys_for(toks, offsets))
    probs = model.next_token_probs(model.keys_from_rows(rows))
    np.testing.assert_allclose(probs[np.arange(7), toks], model.true_token_probs(toks, offsets))
