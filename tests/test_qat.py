"""Quantization-aware training (compress/qat.py) on the `tiny` preset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenbound.compress.qat import QATConfig, mean_loss_bits, nearest_index, quantization_aware_training
from tokenbound.coding.quantize import QuantConfig, decoded_state, quantize_state
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.models.gpt import coded_state_dict, load_coded_state_dict, load_run_module


def _markov_store(path, seed=0, vocab=48, docs=150):
    """Documents from a sparse random Markov chain: learnable structure in a few training steps."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(vocab, 0.1), size=vocab)
    stream, offsets = [], []
    for _ in range(docs):
        doc = [int(rng.integers(1, vocab))]
        for _ in range(int(rng.integers(20, 100)) - 1):
            doc.append(max(1, int(rng.choice(vocab, p=trans[doc[-1]]))))
        offsets.append(len(stream))
        stream += doc + [0]
    return write_store(path, np.array(stream), np.array(offsets), vocab, 0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("qat")
    store = _markov_store(root / "store")
    train(root / "store", root / "run", preset="tiny", seed=0, progress=False)
    return root / "run", store


def test_nearest_index_handles_unsorted_codebooks():
    cb = torch.tensor([0.5, -0.25, 0.0, 1.0, -1.0])
    w = torch.linspace(-2, 2, 401)
    brute = torch.argmin((w[:, None] - cb[None, :]).abs(), dim=1)
    got = nearest_index(w, cb)
    assert torch.equal(cb[got], cb[brute])


def test_qat_does_not_increase_training_loss_at_fixed_levels(tiny_run):
    run, store = tiny_run
    module, cfg = load_run_module(run)
    quant = QuantConfig(levels=5)
    original = {n: t.clone() for n, t in coded_state_dict(module).items()}

    def loss():
        return mean_loss_bits(module, store, cfg.block_size, cfg.context, num_batches=6, batch_size=16, seed=123)

    load_coded_state_dict(module, decoded_state(quantize_state(original, quant)))
    plain = loss()
    load_coded_state_dict(module, original)
    q, log = quantization_aware_training(module, store, cfg.block_size, cfg.context, quant,
                                         QATConfig(steps=40, lr=1e-4, seed=1), progress=False)
    # the module now holds exactly the dequantized QAT result
    state = decoded_state(q)
    for n, t in coded_state_dict(module).items():
        assert torch.equal(t, state[n])
    after = loss()
    assert after <= plain, (after, plain)
    assert log["steps_run"] == 40
    # still a valid codebook: odd, fp16, zero a level, and symbols are the nearest levels of the final codebook
    for cb in q.codebooks.values():
        assert cb.size == 5 and np.any(cb == 0) and cb.dtype == np.float16


def test_qat_is_deterministic_and_keeps_zero_pinned(tiny_run):
    run, store = tiny_run
    results = []
    for _ in range(2):
        module, cfg = load_run_module(run)
        q, _ = quantization_aware_training(module, store, cfg.block_size, cfg.context, QuantConfig(levels=3),
                                           QATConfig(steps=5, lr=1e-3, codebook_lr=1e-2, seed=9), progress=False)
        results.append(q)
    a, b = results
    assert all(np.array_equal(a.symbols[n], b.symbols[n]) for n in a.symbols)
    assert all(np.array_equal(a.codebooks[g], b.codebooks[g]) for g in a.codebooks)
    # the codebook moved (it is trained) but its zero level did not
    module, _ = load_run_module(run)
    init = quantize_state(coded_state_dict(module), QuantConfig(levels=3))
    assert any(not np.array_equal(a.codebooks[g], init.codebooks[g]) for g in a.codebooks)
    assert all(np.sum(cb == 0) >= 1 for cb in a.codebooks.values())


@pytest.mark.parametrize("bad", [dict(steps=-1), dict(lr=0.0), dict(batch_size=0), dict(optimizer="lion")])
def test_bad_qat_configs_raise(bad):
    with pytest.raises(TokenboundError) as e:
        QATConfig(**bad)
    assert e.value.param == "method" and e.value.cli_message().startswith("--method")
