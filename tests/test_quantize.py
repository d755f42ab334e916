"""Codebook quantization and its message (coding/quantize.py), on plain tensors (no model needed)."""
from __future__ import annotations

import numpy as np
import pytest

from tokenbound.coding import entropy
from tokenbound.coding.hashing import state_sha256
from tokenbound.coding.quantize import (QuantConfig, decode_message, encode_message, lloyd_codebook, message_bits,
                                        nearest_level, quantize_state, uniform_codebook)
from tokenbound.errors import TokenboundError

MODEL_CONFIG = {"n_layer": 1, "seed": 7}


def _state(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "h.0.attn.weight": (0.02 * rng.standard_normal((48, 32))).astype(np.float32),
        "h.0.ln.weight": (1 + 0.05 * rng.standard_normal(32)).astype(np.float32),   # all positive
        "wte.weight": (0.1 * rng.standard_t(3, (100, 32))).astype(np.float32),         # heavy tails
        "zeros": np.zeros(7, np.float32),
        "scalar": np.array([0.3], np.float32),
    }


def test_nearest_level_matches_brute_force():
    rng = np.random.default_rng(1)
    cb = np.sort(rng.standard_normal(9))
    x = rng.standard_normal(5000) * 2
    brute = np.argmin(np.abs(x[:, None] - cb[None, :]), axis=1)
    got = nearest_level(x, cb)
    # ties (measure zero here) aside, the nearest level is unique
    assert np.array_equal(got, brute)


@pytest.mark.parametrize("levels", [3, 5, 11, 31])
def test_codebooks_are_odd_fp16_with_an_exact_zero(levels):
    q = quantize_state(_state(), QuantConfig(levels=levels))
    for name, cb in q.codebooks.items():
        assert cb.dtype == np.float16 and cb.size == levels
        assert np.all(np.diff(cb.astype(np.float64)) >= 0)
        assert np.any(cb == 0), name
    assert np.all(q.dequantize()["zeros"] == 0)


def test_uniform_codebook_is_symmetric_and_zero_centred():
    x = np.random.default_rng(2).standard_normal(10000)
    cb = uniform_codebook(x, 11, 0.99)
    assert cb[5] == 0 and np.allclose(cb, -cb[::-1])
    assert np.isclose(cb[-1], np.quantile(np.abs(x), 0.99))


def test_lloyd_does_not_increase_error_and_uses_empty_levels():
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal(20000)) + 1.0        # all positive: half of a symmetric grid would be empty
    init = uniform_codebook(x, 11, 0.999)
    refined = lloyd_codebook(x, init, 30)

    def mse(cb):
        return np.mean((cb[nearest_level(x, cb)] - x) ** 2)

    assert mse(refined) < 0.2 * mse(init)
    assert np.sum(refined == 0) == 1
    used = np.unique(nearest_level(x, refined)).size
    assert used == 10            # every level but the pinned zero is used


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("codebook", ["kmeans", "uniform"])
def test_quantization_error_shrinks_as_levels_grow(scope, codebook):
    errors = [quantize_state(_state(), QuantConfig(levels=k, scope=scope, codebook=codebook)).stats["relative_error"]
              for k in (3, 5, 11, 21, 51)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    if codebook == "kmeans":    # a uniform grid keeps the clipping error of the heavy-tailed tensor
        assert errors[-1] < 0.05


def test_kmeans_beats_uniform_at_equal_levels():
    s = _state()
    err = {c: quantize_state(s, QuantConfig(levels=11, codebook=c)).stats["relative_error"]
           for c in ("kmeans", "uniform")}
    assert err["kmeans"] < err["uniform"]


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("stream", ["tensor", "joint"])
def test_message_round_trip_is_bit_identical(scope, stream):
    q = quantize_state(_state(), QuantConfig(levels=7, scope=scope, stream=stream))
    body, breakdown = encode_message(q, MODEL_CONFIG)
    q2, config = decode_message(body)
    assert config == MODEL_CONFIG
    a, b = q.dequantize(), q2.dequantize()
    assert sorted(a) == sorted(b)
    for n in a:
        assert a[n].dtype == b[n].dtype == np.float32 and a[n].shape == b[n].shape
    assert state_sha256(a) == state_sha256(b)
    # the message length is exactly the file plus the Elias-gamma prefix of its length
    assert breakdown["payload_bits"] + breakdown["header_bits"] == 8 * len(body)
    assert message_bits(breakdown) == 8 * len(body) + breakdown["prefix_bits"]
    assert breakdown["streams"] == (1 if stream == "joint" else len(a))
    # the per-tensor bits account for every coded word and stream header
    assert np.isclose(sum(breakdown["tensors"].values()),
                      breakdown["payload_bits"] + (breakdown["stream_overhead_bits"] if stream == "tensor" else 0))


def test_coded_payload_is_within_a_small_overhead_of_the_empirical_entropy():
    rng = np.random.default_rng(4)
    state = {f"w{i}": rng.standard_normal(20000 + 1000 * i).astype(np.float32) for i in range(3)}
    q = quantize_state(state, QuantConfig(levels=11))
    _, breakdown = encode_message(q, MODEL_CONFIG)
    ideal = sum(entropy.empirical_entropy_bits(s.ravel()) for s in q.symbols.values())
    # ANS with the exact counts: a few 32-bit words per stream above n*H, never far below it
    assert ideal * 0.999 <= breakdown["payload_bits"] <= ideal + 3 * 96
    # stream headers (11 counts, lengths, CRC32: tens of bytes each) are small and listed as header bits
    assert breakdown["stream_overhead_bits"] <= 3 * 8 * 64


def test_flipped_bytes_are_detected_never_silently_decoded():
    q = quantize_state(_state(), QuantConfig(levels=5))
    body, _ = encode_message(q, MODEL_CONFIG)
    reference = state_sha256(q.dequantize())
    rng = np.random.default_rng(5)
    positions = sorted(set(rng.integers(0, len(body), 40).tolist()) | {0, 1, len(body) // 2, len(body) - 1})
    for pos in positions:
        bad = bytearray(body)
        bad[pos] ^= 0x10
        try:
            q2, _ = decode_message(bytes(bad))
        except TokenboundError as e:
            assert "\n" not in str(e)
            continue
        # a flip inside the zlib header that still decompresses identically is impossible (adler32), so any
        # successful decode must be a different message: never the same weights by accident of corruption
        assert state_sha256(q2.dequantize()) != reference, pos   # pragma: no cover
    with pytest.raises(TokenboundError):
        decode_message(body[:-3])
    with pytest.raises(TokenboundError):
        decode_message(body + b"\0")


@pytest.mark.parametrize("bad", [dict(levels=4), dict(levels=1), dict(scope="row"), dict(codebook="lattice"),
                                 dict(stream="x"), dict(clip=0.1), dict(iters=-1)])
def test_bad_configs_raise_one_line_errors_naming_the_flag(bad):
    with pytest.raises(TokenboundError) as e:
        QuantConfig(**bad)
    assert e.value.param == "method" and e.value.cli_message().startswith("--method")


def test_given_codebooks_are_used_and_symbols_are_their_nearest_levels():
    s = _state()
    cbs = {"*": np.linspace(-0.5, 0.5, 5)}
    q = quantize_state(s, QuantConfig(levels=5, scope="global"), codebooks=cbs)
    cb = q.codebooks["*"].astype(np.float64)
    assert np.array_equal(cb, np.linspace(-0.5, 0.5, 5).astype(np.float16).astype(np.float64))
    for n, x in s.items():
        brute = np.argmin(np.abs(x.astype(np.float64).ravel()[:, None] - cb[None, :]), axis=1)
        assert np.array_equal(q.symbols[n].ravel(), brute)
