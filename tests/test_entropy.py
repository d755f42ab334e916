"""Entropy coding (coding/entropy.py): exact round trips, corruption detection, size near the entropy."""
from __future__ import annotations

import numpy as np
import pytest

from tokenbound.coding.entropy import (
    coded_length_bits, decode_integers, decode_integers_from, decode_symbols, decode_symbols_from,
    empirical_entropy_bits, encode_integers, encode_symbols, varint_decode, varint_encode)
from tokenbound.coding import tuples
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


# -- tuples of symbols coded as one letter (format byte 16·m + c) -------------------------------------------------
_T = np.random.default_rng(2024)
_GAUSS = np.clip(np.rint(_T.standard_normal(30_001) * 1.5), -5, 5).astype(np.int64) + 5


@pytest.mark.parametrize("symbols,k", [
    (_GAUSS, 11),                                                            # quantized weights: m = 3
    (_T.integers(0, 2, 10_007), 2),                                          # fair coin: m = 12, tail of 11
    (_T.integers(0, 64, 9_999), 64),                                         # m = 2
    (_T.integers(0, 65, 5_000), 65),                                         # 65² > 4096: m = 1
    (np.where(_T.random(50_000) < 1e-3, 1, 0), 2),                           # extremely skewed
    (_T.choice(5, 20_000, p=[0.96, 0.01, 0.01, 0.01, 0.01]), 5),             # skewed, one dominant symbol
    (_T.choice([3, 9, 4000], 14_001, p=[0.5, 0.3, 0.2]), 5000),              # gaps: remapped symbols
    (_T.choice([0, 1 << 29], 7_000), 1 << 30),                               # beyond the remap table
    (np.tile(np.arange(7), 3_000), 7),                                       # periodic (adversarial for tuples)
    (np.repeat(np.arange(4), 5_000), 4),                                     # sorted runs
    (np.array([1, 0]), 2), (np.array([3]), 9), (np.zeros(0, dtype=np.int64), 3),  # shorter than a tuple
])
@pytest.mark.parametrize("checksum", [True, False])
def test_grouped_streams_round_trip(symbols, k, checksum):
    from tokenbound.coding.entropy import symbol_stream_extent

    data = encode_symbols(symbols, k, checksum=checksum, grouped=True)
    out, end = decode_symbols_from(data + b"\x07tail", 0)
    assert end == len(data) and symbol_stream_extent(data + b"\x07tail", 0)[0] == len(data)
    assert out.dtype == np.int64 and np.array_equal(out, symbols)
    small = decode_symbols(data, dtype=None)
    assert small.dtype == np.min_scalar_type(k - 1) and np.array_equal(small, symbols)
    # the payload stays within the tuple model's overhead budget of n·H(empirical) (plus the final ANS state)
    words = symbol_stream_extent(data, 0)[1]
    assert 8 * words <= empirical_entropy_bits(symbols) * (1 + 2 * tuples.OVERHEAD_BUDGET) + 64


def test_tuple_size_follows_its_rule():
    """m is the largest with r^m <= 4096 whose floor cost r^m / (2^24 ln 2) fits the budget of m·H bits."""
    import math

    assert tuples.tuple_size(np.array([5, 5])) == 12                   # H = 1 bit: 2^12 letters
    assert tuples.tuple_size(np.full(11, 9)) == 3                      # 11^3 = 1331 <= 4096 < 11^4
    assert tuples.tuple_size(np.full(65, 1)) == 1                      # 65^2 > 4096
    assert tuples.tuple_size(np.array([7])) == 1
    skewed = np.array([10**6, 1])                                      # H ≈ 2.1e-5 bits: no tuple pays
    assert tuples.tuple_size(skewed) == 1
    for counts in (np.array([1000, 1]), np.array([90, 5, 5]), np.array([1, 1, 1, 1000])):
        m = tuples.tuple_size(counts)
        p = counts / counts.sum()
        h = -(p * np.log2(p)).sum()
        r = counts.size
        assert r ** m <= tuples.MAX_TUPLE_ALPHABET
        assert m == 1 or r ** m / (2**24 * math.log(2)) <= tuples.OVERHEAD_BUDGET * m * h
        assert r ** (m + 1) > tuples.MAX_TUPLE_ALPHABET or \
            r ** (m + 1) / (2**24 * math.log(2)) > tuples.OVERHEAD_BUDGET * (m + 1) * h


def test_format_byte_records_the_tuple_size():
    s = _GAUSS
    assert encode_symbols(s, 11, grouped=True)[0] == 0x31
    assert encode_symbols(s, 11, grouped=True, checksum=False)[0] == 0x32
    assert encode_symbols(s, 11, grouped=False)[0] == 1
    # below GROUPED_MIN_SYMBOLS the default writes exactly the bytes of the format without tuples
    assert encode_symbols(s, 11) == encode_symbols(s, 11, grouped=False)


def test_large_streams_use_tuples_and_old_format_still_decodes():
    """Above GROUPED_MIN_SYMBOLS the default codes tuples; a stream written without them (the format of every
    earlier version) still decodes to the same symbols, and both are measured from their headers alone."""
    from tokenbound.coding.entropy import GROUPED_MIN_SYMBOLS, symbol_stream_extent

    n = GROUPED_MIN_SYMBOLS + 5
    s = np.resize(_GAUSS.astype(np.uint8), n)
    new, old = encode_symbols(s, 11), encode_symbols(s, 11, grouped=False)
    assert new[0] == 0x31 and old[0] == 1
    for data in (new, old):
        assert symbol_stream_extent(data)[0] == len(data)
        assert np.array_equal(decode_symbols(data, dtype=None), s)
    assert np.array_equal(decode_symbols(old), s)
    assert abs(len(new) - len(old)) <= 16  # same counts header, payloads within a few words


def test_grouped_corruption_is_caught():
    data = bytearray(encode_symbols(_T.integers(0, 5, 3000), 5, grouped=True))
    assert data[0] >> 4 > 1
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(TokenboundError):
            decode_symbols(bytes(bad))
    for byte in (0x11, 0x12, 0x03, 0xF1):  # m = 1 is never written; c must be 1 or 2; 5^15 letters too many
        with pytest.raises(TokenboundError):
            decode_symbols(bytes([byte]) + bytes(data[1:]))


def test_decode_dtype_is_checked():
    data = encode_symbols(np.array([0, 299, 5]), 300)
    assert decode_symbols(data, dtype=None).dtype == np.uint16
    assert decode_symbols(data, dtype=np.int16).dtype == np.int16
    for bad in (np.int8, np.uint8, np.float64):
        with pytest.raises(TokenboundError, match="dtype"):
            decode_symbols(data, dtype=bad)


def test_grouped_byte_format_is_pinned():
    """The bytes of a fixed tuple-coded stream never change (artifacts coded earlier must decode bit-exactly)."""
    import hashlib

    s = _lcg_symbols(200_003, [0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 1.0])
    data = encode_symbols(s, 9, grouped=True)
    assert data[0] == 0x31
    assert hashlib.sha256(data).hexdigest() == "d9ee62e3dff9773120a7b70aab4a67cda635894e4803fb6a128a347843bc86ad"
    assert np.array_equal(decode_symbols(data), s)
