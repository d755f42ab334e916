"""Entropy coding (coding/entropy.py): exact round trips, corruption detection, size near the entropy."""
from __future__ import annotations

import numpy as np
import pytest

from tokenbound.coding.entropy import (
    coded_length_bits, decode_integers, decode_integers_from, decode_symbols, decode_symbols_from,
    empirical_entropy_bits, encode_integers, encode_symbols, varint_decode, varint_encode)
from tokenbound.errors import TokenboundError

RNG = np.random.default_rng(1234)


@pytest.mark.parametrize("symbols,k", [
    (RNG.integers(0, 11, 50_000), 11),                      # near-uniform
    (RNG.choice(11, 50_000, p=RNG.dirichlet(np.full(11, 0.2))), 11),  # skewed
    (np.full(10_000, 7), 11),                               # degenerate: one symbol
    (np.array([4]), None),
    (np.zeros(0, dtype=np.int64), 5),
    (RNG.integers(0, 3, 1000) * 100_000, 1_000_000),        # sparse large alphabet
    (RNG.integers(0, 40_000, 20_000).astype(np.uint16), 65_536),
])
def test_round_trip(symbols, k):
    data = encode_symbols(symbols, k)
    out = decode_symbols(data)
    assert out.dtype == np.int64 and np.array_equal(out, np.asarray(symbols, dtype=np.int64))
    assert coded_length_bits(data) == 8 * len(data)


def test_payload_close_to_empirical_entropy():
    p = RNG.dirichlet(np.full(11, 0.5))
    s = RNG.choice(11, 400_000, p=p)
    bits = coded_length_bits(encode_symbols(s, 11))
    h = empirical_entropy_bits(s)
    # header: version, K, n, r, 11 (gap, count) pairs, W and CRC: well under 100 bytes
    assert h <= bits <= h * (1 + 1e-4) + 8 * 100


def test_degenerate_stream_costs_only_a_header():
    assert len(encode_symbols(np.full(1_000_000, 3), 11)) < 20
    assert empirical_entropy_bits(np.full(10, 3)) == 0.0


def test_absent_symbols_cost_nothing():
    s = RNG.integers(0, 2, 1000)
    small = encode_symbols(s, 2)
    large = encode_symbols(s, 1 << 30)
    assert len(large) - len(small) <= 4  # only the varint of K grows


def test_empirical_entropy_matches_formula():
    s = np.array([0, 0, 1, 2])
    assert empirical_entropy_bits(s) == pytest.approx(2 * 1 + 1 * 2 + 1 * 2)


def test_every_corrupted_byte_is_caught():
    data = bytearray(encode_symbols(RNG.integers(0, 5, 3000), 5))
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(TokenboundError):
            decode_symbols(bytes(bad))


def test_truncation_and_trailing_bytes_are_caught():
    data = encode_symbols(RNG.integers(0, 5, 3000), 5)
    for cut in (0, 1, 3, len(data) // 2, len(data) - 1):
        with pytest.raises(TokenboundError):
            decode_symbols(data[:cut])
    with pytest.raises(TokenboundError):
        decode_symbols(data + b"\0")


def test_bad_input_is_rejected():
    with pytest.raises(TokenboundError):
        encode_symbols(np.array([0, 5]), 5)
    with pytest.raises(TokenboundError):
        encode_symbols(np.array([-1, 2]))
    with pytest.raises(TokenboundError):
        encode_symbols(np.array([0.5]))


def test_streams_concatenate():
    a, b = RNG.integers(0, 4, 100), RNG.integers(0, 9, 50)
    v = np.array([0, 1, 5, 2**40, 2**62 - 1])
    data = encode_symbols(a, 4) + encode_integers(v) + encode_symbols(b, 9)
    x, off = decode_symbols_from(data, 0)
    y, off = decode_integers_from(data, off)
    z, off = decode_symbols_from(data, off)
    assert off == len(data)
    assert np.array_equal(x, a) and np.array_equal(y, v) and np.array_equal(z, b)


def test_integers_round_trip_and_corruption():
    v = np.concatenate([[0, 1, 2, 3, 4, 7, 8, 2**31, 2**62 - 1], RNG.geometric(0.01, 5000)])
    data = encode_integers(v)
    assert np.array_equal(decode_integers(data), v)
    assert np.array_equal(decode_integers(encode_integers([])), np.zeros(0))
    bad = bytearray(data)
    bad[-6] ^= 1  # inside the raw mantissa bytes
    with pytest.raises(TokenboundError):
        decode_integers(bytes(bad))


def test_varints():
    vals = [0, 1, 127, 128, 255, 300, 2**35, 2**63 - 1]
    data = varint_encode(vals)
    assert data[:5] == bytes([0, 1, 0x7F, 0x80, 0x01])
    out, off = varint_decode(data, 0)
    assert list(out) == vals and off == len(data)
    out, off = varint_decode(data, 2, count=2)
    assert list(out) == [127, 128] and off == 5
    with pytest.raises(TokenboundError):
        varint_decode(b"\x80\x80", 0)
    with pytest.raises(TokenboundError):
        varint_decode(b"\x01", 0, count=2)


def test_streams_without_checksum_are_smaller_and_round_trip():
    s = RNG.integers(0, 6, 2000)
    with_crc, without = encode_symbols(s, 6), encode_symbols(s, 6, checksum=False)
    assert len(with_crc) - len(without) == 4
    assert np.array_equal(decode_symbols(without), s)
    v = RNG.geometric(0.1, 500)
    assert len(encode_integers(v)) - len(encode_integers(v, checksum=False)) == 8
    assert np.array_equal(decode_integers(encode_integers(v, checksum=False)), v)


def test_varints_are_canonical():
    with pytest.raises(TokenboundError):
        varint_decode(b"\x80\x00", 0)  # zero written in two bytes
    assert varint_decode(b"\x00", 0, 1)[0][0] == 0


def _lcg_symbols(n: int, cdf: list[float]) -> np.ndarray:
    """A deterministic skewed stream (no RNG: the same symbols on every numpy version)."""
    i = np.arange(n, dtype=np.uint64)
    u = ((i * np.uint64(2654435761) + np.uint64(12345)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return np.searchsorted(np.asarray(cdf) * (1 << 24), u.astype(np.float64), side="right")


@pytest.mark.parametrize("n,cdf,sha", [
    (200_000, [0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 1.0],
     "5e822b8b1a4e2c19bd575136055c190ebf6e44494f94ecdee4589581afc8c523"),
    (65_537, [0.5, 1.0], "1fcb0c0c3a0c8ae2b82706a7eccaea518c25c1a8878c47335f046360ffa43887"),
])
def test_byte_format_is_pinned(n, cdf, sha):
    """The bytes of a fixed stream never change (artifacts coded earlier must decode bit-exactly)."""
    import hashlib

    s = _lcg_symbols(n, cdf)
    data = encode_symbols(s, 9)
    assert hashlib.sha256(data).hexdigest() == sha
    assert np.array_equal(decode_symbols(data), s)


_R = np.random.default_rng(77)


@pytest.mark.parametrize("symbols,k", [
    (_R.choice(5, (1 << 16) - 1, p=[0.6, 0.2, 0.1, 0.07, 0.03]), 5),        # one symbol short of a block
    (_R.choice(5, 1 << 16, p=[0.6, 0.2, 0.1, 0.07, 0.03]), 5),              # exactly one block
    (_R.choice(5, (1 << 16) + 1, p=[0.6, 0.2, 0.1, 0.07, 0.03]), 5),        # one symbol into the next
    (_R.integers(0, 256, 3 * (1 << 16) + 17).astype(np.uint8), 256),         # near-uniform bytes
    (np.where(_R.random(200_001) < 1e-4, 1, 0), 2),                          # extremely skewed
    (_R.geometric(0.05, 150_000) - 1, None),                                 # long tail, many symbols
    (_R.choice([3, 9, 4000], 140_000, p=[0.5, 0.3, 0.2]), 5000),             # gaps: remapped symbols
    (_R.choice([0, 1 << 29], 70_000), 1 << 30),                              # beyond the remap table
    (np.full(200_000, 6, dtype=np.uint16), 9),                               # one symbol, several blocks
    (_R.integers(0, 2, 2), 2),                                               # tiny
])
@pytest.mark.parametrize("checksum", [True, False])
def test_random_streams_round_trip(symbols, k, checksum):
    data = encode_symbols(symbols, k, checksum=checksum)
    out, end = decode_symbols_from(data + b"\x07tail", 0)
    assert end == len(data)
    assert out.dtype == np.int64 and np.array_equal(out, np.asarray(symbols, dtype=np.int64))
