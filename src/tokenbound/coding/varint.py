"""Unsigned LEB128 varints, vectorised: the integers of every stream header in coding/ (docs/compression.md)."""
from __future__ import annotations

import numpy as np

from ..errors import TokenboundError

_WHAT = "entropy-coded stream"


def varint_encode(ints) -> bytes:
    """Unsigned LEB128 encoding of a sequence of non-negative integers (< 2^63), concatenated."""
    v = np.asarray(ints, dtype=np.int64).reshape(-1) if not isinstance(ints, (int, np.integer)) \
        else np.asarray([ints], dtype=np.int64)
    if v.size == 0:
        return b""
    if (v < 0).any():
        raise ValueError("varint_encode: values must be non-negative")
    u = v.astype(np.uint64)
    bitlen = np.zeros(u.shape, dtype=np.int64)
    rest = u.copy()
    while rest.any():  # count the 7-bit groups of each value (at most 9 rounds)
        nz = rest != 0
        bitlen[nz] += 1
        rest >>= np.uint64(7)
    nbytes = np.maximum(bitlen, 1)
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for j in range(int(nbytes.max())):
        sel = nbytes > j
        byte = (u[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        cont = (nbytes[sel] - 1 > j).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (byte | cont).astype(np.uint8)
    return out.tobytes()


def varint_decode(data: bytes, offset: int = 0, count: int | None = None) -> tuple[np.ndarray, int]:
    """Decode `count` varints (all remaining bytes if None) from data[offset:].

    Returns (int64 array of values, offset just after the last byte read). Truncated, over-long (> 63 bits)
    or non-canonical (a redundant trailing zero group) varints raise TokenboundError.
    """
    buf = np.frombuffer(data, dtype=np.uint8, offset=offset) if offset <= len(data) else np.zeros(0, np.uint8)
    if count is not None:
        buf = buf[: 9 * count]  # a varint has at most 9 bytes: never scan the rest of a long message
    if count == 0:
        return np.zeros(0, dtype=np.int64), offset
    terminal = np.flatnonzero(buf < 0x80)
    if count is None:
        if buf.size and buf[-1] >= 0x80:
            raise TokenboundError(f"{_WHAT}: truncated varint")
        count = terminal.size
        if count == 0:
            return np.zeros(0, dtype=np.int64), offset
    elif terminal.size < count:
        raise TokenboundError(f"{_WHAT}: truncated (expected {count} varints at byte {offset})")
    ends = terminal[:count] + 1
    starts = np.concatenate(([0], ends[:-1]))
    lengths = ends - starts
    if lengths.max() > 9:
        raise TokenboundError(f"{_WHAT}: varint longer than 63 bits at byte {offset}")
    if ((buf[ends - 1] == 0) & (lengths > 1)).any():
        raise TokenboundError(f"{_WHAT}: non-canonical varint at byte {offset}")
    used = buf[: ends[-1]].astype(np.uint64) & np.uint64(0x7F)
    pos = np.arange(ends[-1]) - np.repeat(starts, lengths)
    values = np.add.reduceat(used << (np.uint64(7) * pos.astype(np.uint64)), starts)
    return values.astype(np.int64), offset + int(ends[-1])


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """One varint at `offset`: (its value, offset after it)."""
    vals, offset = varint_decode(data, offset, 1)
    return int(vals[0]), offset
