"""Real entropy coding of integer symbol streams (constriction ANS), with a self-delimiting byte format.

Every message length that a certificate uses must be reproduced by a decoder (docs/design.md §3), so this module
produces actual bytes and decodes them back; ``coded_length_bits`` is just ``8 * len(data)``.

Symbol-stream format (``encode_symbols``), all integers as unsigned LEB128 varints:

    format byte | K | n | r | r × (gap, count − 1) | W | W little-endian uint32 words | CRC32 (4 bytes LE)

- K is the alphabet size, n the number of symbols, r the number of *distinct* symbols present; the r
  present symbols are listed in increasing order as gaps (symbol − previous − 1, previous = −1) with their
  counts, so absent symbols cost nothing.
- The payload is the symbols coded with constriction's ANS coder over the compact alphabet of the r present
  symbols, with ONE shared ``Categorical`` model built from the integer counts (``perfect=False``): the
  decoder rebuilds exactly the same model from the header, so encoder and decoder agree bit for bit.
  When r <= 1 the payload is empty (W = 0): the header already determines the stream.
- The format byte is 16·m + c. c = 1: a CRC32 follows the words; c = 2 (``checksum=False``): no CRC, for
  streams embedded in a container that carries its own checksum (e.g. a model bitstream), where 32 bits per
  stream would be wasted prior mass. m = 0: the symbols are coded one by one (format bytes 1 and 2, the only
  format before tuples existed; ``grouped=False`` still writes it). m >= 2: consecutive m-tuples of symbols
  are coded as one letter of the product alphabet (coding/tuples.py), which divides the decoder's work by
  about m; ``encode_symbols`` uses it only for streams of at least ``GROUPED_MIN_SYMBOLS`` symbols, so
  smaller streams keep their bytes.
- The CRC32 covers every byte before it, so any corrupted byte is reported as a ``TokenboundError``.

The format is self-delimiting (the decoder knows where the message ends from its own prefix), hence the set
of all valid encodings is prefix-free: its length in bits is a valid Kraft code length as is.
Streams can be concatenated and read back in order with ``decode_symbols_from(data, offset)``.

``encode_integers`` codes unbounded non-negative integers (counts, gaps) Elias-gamma style: the bit length of
v+1 is entropy coded as a symbol stream and the remaining mantissa bits are stored raw.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from ..errors import TokenboundError
from . import tuples
from .varint import read_varint, varint_decode, varint_encode  # noqa: F401 (varints re-exported)

FORMAT_VERSION = 1           # with CRC32
FORMAT_VERSION_NO_CRC = 2    # without (embedded streams)
# streams of at least this many symbols code m-tuples (format byte 16·m + c) when that pays; below it the
# bytes are those every earlier version wrote
GROUPED_MIN_SYMBOLS = 1 << 22
# constriction's default coders quantize probabilities to 24 bits; keep the alphabet well inside that.
MAX_DISTINCT_SYMBOLS = 1 << 20
# symbols per counting pass when the alphabet itself is too large for BLOCK to pay (bounds the intp copy)
CHUNK = 1 << 24
# symbols per counting / remapping / coder call: small enough that each temporary (int32 indices, bincount's
# intp copy) stays in the CPU cache, which makes those passes ~4x cheaper than over CHUNK symbols; the ANS
# coder is a stack, so the bytes do not depend on how the stream is split into calls.
BLOCK = 1 << 16
_WHAT = "entropy-coded stream"


# -- entropy ---------------------------------------------------------------------------------------------
def empirical_entropy_bits(symbols) -> float:
    """n · H(empirical distribution of `symbols`) in bits: the ideal payload of a code with the counts known."""
    s = np.asarray(symbols).reshape(-1)
    if s.size == 0:
        return 0.0
    if s.dtype.kind in "iu" and s.min() >= 0 and s.max() < max(1 << 24, 4 * s.size):
        counts = np.bincount(s.astype(np.int64))
    else:
        counts = np.unique(s, return_counts=True)[1]
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    return float(-(counts * np.log2(counts / n)).sum())


def coded_length_bits(data: bytes) -> int:
    """Exact length of an encoded message in bits."""
    return 8 * len(data)


# -- symbol streams ----------------------------------------------------------------------------------------
def _categorical(counts: np.ndarray):
    import constriction

    # Built from integer counts (exact in float64), perfect=False: encoder and decoder build the same model.
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def _present_counts(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct symbols present, their counts)."""
    if k <= max(1 << 24, 4 * s.size):
        counts = np.zeros(k, dtype=np.int64)
        step = BLOCK if k <= BLOCK else CHUNK  # in-cache blocks, unless the bins themselves are large
        for start in range(0, s.size, step):  # chunked: bincount would copy the whole array to intp
            counts += np.bincount(s[start:start + step], minlength=k)
        present = np.flatnonzero(counts)
        return present.astype(np.int64), counts[present].astype(np.int64)
    present, counts = np.unique(s, return_counts=True)
    return present.astype(np.int64), counts.astype(np.int64)


def encode_symbols(symbols: np.ndarray, alphabet_size: int | None = None, *, checksum: bool = True,
                   grouped: bool | None = None) -> bytes:
    """Entropy code a 1-D array of integers in [0, K) into a self-contained, self-delimiting byte string.

    K defaults to max(symbols) + 1. The payload is within a few words of ``empirical_entropy_bits``;
    the header costs a few bytes per distinct symbol present (absent symbols are free).
    `grouped`: whether m-tuples of symbols may be coded as one letter (``tuples.tuple_size`` picks m; 1 means
    no); None (the default) allows it for streams of at least GROUPED_MIN_SYMBOLS symbols, False never
    (format bytes 1/2, decodable by every earlier version), True at any length.
    """
    import constriction

    s = np.asarray(symbols)
    if s.ndim != 1:
        raise TokenboundError(f"encode_symbols: expected a 1-D array, got shape {s.shape}")
    if s.size and s.dtype.kind not in "iu":
        raise TokenboundError(f"encode_symbols: symbols must be integers, got dtype {s.dtype}")
    if s.dtype.kind == "u" and s.dtype.itemsize == 8:
        s = s.astype(np.int64)  # numpy cannot index/bincount uint64 safely
    smax = int(s.max()) if s.size else -1
    k = int(alphabet_size) if alphabet_size is not None else max(smax + 1, 1)
    if k < 1:
        raise TokenboundError(f"encode_symbols: alphabet size must be >= 1, got {k}")
    if s.size and (int(s.min()) < 0 or smax >= k):
        raise TokenboundError(f"encode_symbols: symbols must lie in [0, {k}), found {int(s.min())}..{smax}")
    present, counts = _present_counts(s, k) if s.size else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    r = present.size
    if r > MAX_DISTINCT_SYMBOLS:
        raise TokenboundError(f"encode_symbols: {r} distinct symbols exceed the coder's limit {MAX_DISTINCT_SYMBOLS}")
    gaps = np.diff(present, prepend=-1) - 1
    pairs = np.empty(2 * r, dtype=np.int64)
    pairs[0::2], pairs[1::2] = gaps, counts - 1
    allowed = s.size >= GROUPED_MIN_SYMBOLS if grouped is None else bool(grouped)
    m = tuples.tuple_size(counts) if allowed else 1
    version = (FORMAT_VERSION if checksum else FORMAT_VERSION_NO_CRC) | (m << 4 if m > 1 else 0)
    header = bytes([version]) + varint_encode([k, s.size, r]) + varint_encode(pairs)
    if r <= 1:
        words = np.zeros(0, dtype=np.uint32)
    else:
        compact = _compactor(present, r, s.size)
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push last-first so that decoding pops in stream order. The n mod m symbols after the
        # last whole tuple go first (they are decoded last), one by one.
        body = s.size - s.size % m
        if body < s.size:
            coder.encode_reverse(compact(s[body:]), _categorical(counts))
        model = _categorical(counts) if m == 1 else _categorical(tuples.tuple_probabilities(counts, m))
        step = m * BLOCK
        for start in reversed(range(0, body, step)):
            c = compact(s[start:min(start + step, body)])
            coder.encode_reverse(c if m == 1 else tuples.tuple_indices(c, r, m), model)
        words = coder.get_compressed().astype("<u4", copy=False)
    out = header + varint_encode([words.size]) + words.tobytes()
    return (out + _crc_bytes(out)) if checksum else out


def _compactor(present: np.ndarray, r: int, n: int):
    """The map from a block of symbols to their int32 indices among the `present` ones."""
    if int(present[-1]) == r - 1:  # every symbol of [0, r) present: the symbols are their own indices
        return lambda chunk: chunk.astype(np.int32)
    if present[-1] < max(1 << 24, 4 * n):
        remap = np.zeros(int(present[-1]) + 1, dtype=np.int32)
        remap[present] = np.arange(r, dtype=np.int32)
        return lambda chunk: remap[chunk]
    return lambda chunk: np.searchsorted(present, chunk).astype(np.int32)


def _crc_bytes(body: bytes) -> bytes:
    return (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")


def decode_symbols_from(data: bytes, offset: int = 0, *, dtype=np.int64) -> tuple[np.ndarray, int]:
    """Decode one symbol stream starting at `offset`; returns (symbols, offset after the stream).

    `dtype`: of the returned array (int64 by default); None picks the smallest unsigned integer type that holds
    K − 1, which saves writing 8 bytes per symbol when the caller does not need them (1 for K <= 256).
    """
    out, end, _ = _decode_symbols(bytes(data), offset, dtype)
    return out, end


def _format_byte(data: bytes, offset: int) -> tuple[bool, int]:
    """(whether the stream at `offset` carries a CRC32, its tuple size m, 1 when symbols are coded singly)."""
    if offset >= len(data):
        raise TokenboundError(f"{_WHAT}: truncated (no data at byte {offset})")
    version = data[offset]
    m, c = version >> 4, version & 0x0F
    if c not in (FORMAT_VERSION, FORMAT_VERSION_NO_CRC) or m == 1:
        raise TokenboundError(f"{_WHAT}: unknown format version {version} at byte {offset} (corrupted?)")
    return c == FORMAT_VERSION, max(m, 1)


def _output_dtype(dtype, k: int) -> np.dtype:
    if dtype is None:
        return np.min_scalar_type(max(k - 1, 0))
    dt = np.dtype(dtype)
    if dt.kind not in "iu" or k - 1 > np.iinfo(dt).max:
        raise TokenboundError(f"dtype: {dt} cannot hold the symbols of a stream over {k} letters")
    return dt


def _decode_symbols(data: bytes, offset: int, dtype=np.int64) -> tuple[np.ndarray, int, bool]:
    """(symbols, offset after the stream, whether it carried a CRC)."""
    import constriction

    start = offset
    checked, m = _format_byte(data, offset)
    (k, n, r), offset = varint_decode(data, offset + 1, 3)
    k, n, r = int(k), int(n), int(r)
    if r > min(k, n, MAX_DISTINCT_SYMBOLS) or (n > 0 and r == 0) or 2 * r > len(data) - offset:
        raise TokenboundError(f"{_WHAT}: inconsistent header (K={k}, n={n}, distinct={r}; corrupted?)")
    if m > 1 and (r < 2 or r ** m > tuples.MAX_TUPLE_ALPHABET):
        raise TokenboundError(f"{_WHAT}: inconsistent header ({r}-symbol tuples of {m}; corrupted?)")
    dt = _output_dtype(dtype, k)
    pairs, offset = varint_decode(data, offset, 2 * r)
    nwords, offset = read_varint(data, offset)
    end = offset + 4 * nwords
    crc_len = 4 if checked else 0
    if end + crc_len > len(data):
        raise TokenboundError(f"{_WHAT}: truncated (needs {end + crc_len - start} bytes, has {len(data) - start})")
    if checked and _crc_bytes(data[start:end]) != data[end:end + 4]:
        raise TokenboundError(f"{_WHAT}: CRC32 mismatch (corrupted data)")
    # Check the header's internal consistency (the only defence when there is no CRC).
    gaps, counts = pairs[0::2], pairs[1::2] + 1
    present = np.cumsum(gaps + 1) - 1
    if (r and present[-1] >= k) or int(counts.sum()) != n or (r <= 1 and nwords):
        raise TokenboundError(f"{_WHAT}: inconsistent header (symbols/counts do not match K={k}, n={n})")
    if r == 0:
        return np.zeros(0, dtype=dt), end + crc_len, checked
    if r == 1:
        return np.full(n, present[0], dtype=dt), end + crc_len, checked
    words = np.frombuffer(data, dtype="<u4", count=nwords, offset=offset).astype(np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    try:
        out = _output_array(n, dt)
    except (MemoryError, ValueError):
        raise TokenboundError(f"{_WHAT}: header claims {n} symbols (corrupted?)") from None
    try:
        if m == 1:
            decoded_counts = _decode_singly(coder, _categorical(counts), present, out)
        else:
            decoded_counts = _decode_tuples(coder, counts, present, m, out)
    except Exception as e:  # constriction raises on exhausted/invalid data
        raise TokenboundError(f"{_WHAT}: payload does not decode ({e})") from None
    # Belt and braces behind the CRC: the decoded stream must reproduce the header's counts exactly.
    if not coder.is_empty() or not np.array_equal(decoded_counts, counts):
        raise TokenboundError(f"{_WHAT}: decoded symbols do not match the header (corrupted?)")
    return out, end + crc_len, checked


def _decode_singly(coder, model, present: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Pop out.size symbols coded one by one into `out`; returns the count of each compact symbol."""
    r = present.size
    decoded_counts = np.zeros(r, dtype=np.int64)
    identity = int(present[-1]) == r - 1  # every symbol of [0, K) present: no remapping needed
    values = present.astype(out.dtype)
    for pos in range(0, out.size, BLOCK):  # in-cache blocks: the copy and the count cost ~1 ns a symbol
        compact = coder.decode(model, min(BLOCK, out.size - pos))
        block = out[pos:pos + compact.size]
        if identity:
            block[...] = compact
        else:
            np.take(values, compact, out=block, mode="clip")  # compact < r: clip never clips, and never buffers
        # int64 output already has bincount's type: counting it saves the intp copy of the int32 indices
        decoded_counts += np.bincount(block if identity and out.dtype == np.intp else compact, minlength=r)
    return decoded_counts


def _decode_tuples(coder, counts: np.ndarray, present: np.ndarray, m: int, out: np.ndarray) -> np.ndarray:
    """Pop the m-tuples, then the n mod m trailing symbols, into `out`; returns the count of each compact symbol."""
    r = present.size
    model = _categorical(tuples.tuple_probabilities(counts, m))
    table = tuples.tuple_table(present.astype(out.dtype), m)
    body = out.size - out.size % m
    tuple_counts = np.zeros(r ** m, dtype=np.int64)
    for pos in range(0, body, m * BLOCK):
        idx = coder.decode(model, min(BLOCK, (body - pos) // m))
        np.take(table, idx, out=out[pos:pos + m * idx.size].view(table.dtype), mode="clip")
        tuple_counts += np.bincount(idx, minlength=r ** m)
    decoded_counts = tuples.marginal_counts(tuple_counts, r, m)
    if body < out.size:
        decoded_counts += _decode_singly(coder, _categorical(counts), present, out[body:])
    return decoded_counts
def _output_array(n: int, dtype: np.dtype) -> np.ndarray:
    """np.empty(n, dtype), without numpy's transparent-huge-page hint for large arrays.

    The output is written once, in order, so huge pages save little; but where the kernel compacts memory
    synchronously for madvised regions (THP defrag "madvise", the Linux default) the hint can make the first
    touch of a large array several times slower (800 MB: 1.9 s against 0.5 s of CPU, measured on the machine of
    docs/compression.md's benchmark). The setting is numpy's, read when the array is allocated; it is restored.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    get, set_ = (getattr(multiarray, "_get_madvise_hugepage", None),
                 getattr(multiarray, "_set_madvise_hugepage", None))
    if get is None or set_ is None or n * np.dtype(dtype).itemsize < (1 << 22):
        return np.empty(n, dtype=dtype)
    previous = set_(False)
    try:
        return np.empty(n, dtype=dtype)
    finally:
        set_(previous)


def decode_symbols(data: bytes, *, dtype=np.int64) -> np.ndarray:
    """Exact inverse of ``encode_symbols``; any corruption raises TokenboundError.

    `dtype` as in ``decode_symbols_from`` (int64 by default, None for the smallest type that holds K − 1).
    """
    out, end = decode_symbols_from(data, 0, dtype=dtype)
    if end != len(data):
        raise TokenboundError(f"{_WHAT}: {len(data) - end} trailing bytes after the stream")
    return out


def symbol_stream_extent(data: bytes, offset: int = 0) -> tuple[int, int]:
    """(offset just after the symbol stream at `offset`, bytes of its ANS words), read from its header alone.

    Measures a stream without decoding its payload: everything but the words (format byte, K, n, the counts,
    the word count, the CRC32) is the stream's header. Truncation or an inconsistent header is a TokenboundError.
    """
    checked, _m = _format_byte(data, offset)
    (k, n, r), off = varint_decode(data, offset + 1, 3)
    if int(r) > min(int(k), int(n), MAX_DISTINCT_SYMBOLS) or 2 * int(r) > len(data) - off:
        raise TokenboundError(f"{_WHAT}: inconsistent header at byte {offset} (corrupted?)")
    _pairs, off = varint_decode(data, off, 2 * int(r))
    nwords, off = read_varint(data, off)
    end = off + 4 * nwords + (4 if checked else 0)
    if end > len(data):
        raise TokenboundError(f"{_WHAT}: truncated (stream at byte {offset} needs {end - offset} bytes)")
    return end, 4 * nwords


# -- unbounded non-negative integers -------------------------------------------------------------------------
def encode_integers(values, *, checksum: bool = True) -> bytes:
    """Code non-negative integers (< 2^62): bucket b = bitlength(v+1) − 1 entropy coded, then b raw bits.

    Self-delimiting: symbol stream of buckets | varint(#mantissa bytes) | mantissa bytes | CRC32 (the CRC
    only with `checksum`, which the bucket stream's version byte records).
    """
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 1 << 62):
        raise TokenboundError("encode_integers: values must lie in [0, 2^62)")
    w = (v + 1).astype(np.uint64)
    buckets = _bit_length(w) - 1
    mant = w - (np.uint64(1) << buckets.astype(np.uint64))
    bits = _mantissa_bits(mant, buckets)
    packed = np.packbits(bits).tobytes()
    body = varint_encode([len(packed)]) + packed
    return encode_symbols(buckets, 64, checksum=checksum) + body + (_crc_bytes(body) if checksum else b"")


def decode_integers_from(data: bytes, offset: int = 0) -> tuple[np.ndarray, int]:
    """Inverse of ``encode_integers`` starting at `offset`; returns (int64 values, offset after)."""
    data = bytes(data)
    buckets, offset, checked = _decode_symbols(data, offset)
    body_start = offset
    nbytes, offset = read_varint(data, offset)
    end = offset + nbytes
    crc_len = 4 if checked else 0
    if end + crc_len > len(data):
        raise TokenboundError(f"{_WHAT}: truncated integer mantissas")
    if checked and _crc_bytes(data[body_start:end]) != data[end:end + 4]:
        raise TokenboundError(f"{_WHAT}: CRC32 mismatch in integer mantissas (corrupted data)")
    total = int(buckets.sum())
    if (total + 7) // 8 != nbytes:
        raise TokenboundError(f"{_WHAT}: mantissa length does not match the buckets (corrupted?)")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset))
    if bits[total:].any():
        raise TokenboundError(f"{_WHAT}: non-zero padding bits (corrupted?)")
    mant = np.zeros(buckets.size, dtype=np.uint64)
    nz = np.flatnonzero(buckets > 0)
    if nz.size:
        b = buckets[nz]
        starts = np.concatenate(([0], np.cumsum(b)[:-1]))
        shifts = (np.repeat(b, b) - 1 - (np.arange(total) - np.repeat(starts, b))).astype(np.uint64)
        mant[nz] = np.add.reduceat(bits[:total].astype(np.uint64) << shifts, starts)
    w = (np.uint64(1) << buckets.astype(np.uint64)) + mant
    return (w - np.uint64(1)).astype(np.int64), end + crc_len


def decode_integers(data: bytes) -> np.ndarray:
    out, end = decode_integers_from(data, 0)
    if end != len(data):
        raise TokenboundError(f"{_WHAT}: {len(data) - end} trailing bytes after the integers")
    return out


def _bit_length(w: np.ndarray) -> np.ndarray:
    """Bit length of positive uint64 values (exact: float64 log2 is not, near powers of two)."""
    out = np.zeros(w.shape, dtype=np.int64)
    rest = w.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = rest >= (np.uint64(1) << np.uint64(shift))
        out[big] += shift
        rest[big] >>= np.uint64(shift)
    return out + (rest > 0)


def _mantissa_bits(mant: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """The low `b` bits of each value, most significant first, concatenated (uint8 0/1 array)."""
    total = int(buckets.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint8)
    nz = buckets > 0
    b, m = buckets[nz], mant[nz]
    starts = np.concatenate(([0], np.cumsum(b)[:-1]))
    shifts = (np.repeat(b, b) - 1 - (np.arange(total) - np.repeat(starts, b))).astype(np.uint64)
    return ((np.repeat(m, b) >> shifts) & np.uint64(1)).astype(np.uint8)


# -- message lengths -----------------------------------------------------------------------------------------
def prefix_free_bits(num_bits: int, self_delimiting: bool) -> int:
    """Kraft-valid code length of a message: as is when self-delimiting, else plus its Elias-gamma length prefix."""
    from ..bounds.prefix import elias_gamma_bits

    return int(num_bits) if self_delimiting else int(num_bits) + elias_gamma_bits(max(int(num_bits), 1))


def uniform_code_bits(n: int, alphabet_size: int) -> float:
    """Bits of n symbols coded uniformly over K letters (the no-compression reference)."""
    return n * math.log2(alphabet_size) if alphabet_size > 1 else 0.0
