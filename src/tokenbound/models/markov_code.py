"""The Markov model's message: the bitstream that codes its count table, and that bitstream's length.

Format (``encode_table``): version byte | varints V, eot, order, len(smoothing) | smoothing (UTF-8) | four
integer streams (``coding.entropy.encode_integers`` without their own CRCs): context-key gaps, entries per
context − 1, token gaps within each context, counts − 1 | one CRC32 over everything. It is self-delimiting;
the message length we report adds an Elias-gamma prefix of its bit length anyway (conservative,
``code_length_bits``). A saved model's message is measured from its bitstream file (``measured_message_bits``);
loading decodes that same file (models/markov_fit.py), so what is scored is exactly what is coded.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import KIND_MARKOV, MANIFEST, file_inside, read_manifest, sha256_bytes
from ..bounds.prefix import elias_gamma_bits
from ..coding.entropy import decode_integers_from, encode_integers, varint_decode, varint_encode
from ..errors import TokenboundError
from .markov_table import OrderTable, check_shape

CODE_VERSION = 1
BITSTREAM = "model.tbm"


@dataclass(frozen=True)
class MarkovHeader:
    """What the bitstream says before the count table: the model's shape and its smoothing spec."""

    vocab_size: int
    eot: int
    order: int
    smoothing: str


def encode_table(header: MarkovHeader, table: OrderTable) -> bytes:
    """The bitstream of a count table (module docstring). Deterministic: equal tables give equal bytes."""
    types = table.types
    row_first = np.repeat(table.ptr[:-1], types)
    prev_tok = np.where(np.arange(table.tok.size) == row_first, -1, np.roll(table.tok, 1))
    sm = header.smoothing.encode()
    body = (bytes([CODE_VERSION]) + varint_encode([header.vocab_size, header.eot, header.order, len(sm)]) + sm
            + b"".join(encode_integers(a, checksum=False) for a in (
                np.diff(table.keys, prepend=-1) - 1, types - 1, table.tok - prev_tok - 1, table.cnt - 1)))
    return body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")


def read_header(data: bytes, where: str) -> tuple[MarkovHeader, int]:
    """(header, offset of the count streams) of a bitstream whose CRC32 and header check out, else a one-line
    TokenboundError naming `where`."""
    if len(data) < 6 or zlib.crc32(data[:-4]) & 0xFFFFFFFF != int.from_bytes(data[-4:], "little"):
        raise TokenboundError(f"{where}: CRC32 mismatch or truncated (corrupted model)")
    if data[0] != CODE_VERSION:
        raise TokenboundError(f"{where}: unknown code version {data[0]}")
    (v, eot, order, nsm), off = varint_decode(data, 1, 4)
    check_shape(int(v), int(eot), int(order))
    if off + int(nsm) > len(data) - 4:
        raise TokenboundError(f"{where}: header runs past the end of the bitstream")
    smoothing = data[off:off + int(nsm)].decode("utf-8", errors="replace")
    return MarkovHeader(int(v), int(eot), int(order), smoothing), off + int(nsm)


def decode_table(data: bytes, where: str) -> tuple[MarkovHeader, OrderTable]:
    """(header, count table) from ``encode_table``'s bytes; corruption raises TokenboundError."""
    header, off = read_header(data, where)
    streams = []
    for _ in range(4):
        arr, off = decode_integers_from(data, off)
        streams.append(arr)
    if off != len(data) - 4:
        raise TokenboundError(f"{where}: {len(data) - 4 - off} unexpected bytes after the count streams")
    gaps, types, tok_gaps, cnt = streams
    types = types + 1
    if types.sum() != tok_gaps.size or cnt.size != tok_gaps.size:
        raise TokenboundError(f"{where}: inconsistent stream lengths")
    keys = np.cumsum(gaps + 1) - 1
    ptr = np.append(0, np.cumsum(types)).astype(np.int64)
    steps = tok_gaps + 1
    csum = np.cumsum(steps)
    tok = csum - np.repeat(csum[ptr[:-1]] - steps[ptr[:-1]], types) - 1
    v = header.vocab_size
    if tok.size and (tok.max() >= v or keys[-1] >= (v + 1) ** header.order):
        raise TokenboundError(f"{where}: token id or context key out of range")
    return header, OrderTable(keys, ptr, tok.astype(np.int64), cnt + 1, v)


def code_length_bits(num_bytes: int) -> tuple[int, int]:
    """(payload bits, Elias-gamma prefix bits) of a bitstream of `num_bytes` bytes (module docstring)."""
    payload = 8 * int(num_bytes)
    return payload, elias_gamma_bits(max(payload, 1))


def verified_bitstream(path: Path, man: dict[str, Any]) -> tuple[Path, bytes]:
    """(file, bytes) of a saved model's bitstream: inside its folder and with the manifest's sha256."""
    stream = file_inside(path, man.get("bitstream", BITSTREAM), f"{path / MANIFEST}: bitstream")
    if not stream.exists():
        raise TokenboundError(f"{path}: Markov model is missing {stream.name}")
    data = stream.read_bytes()
    if sha256_bytes(data) != man.get("bitstream_sha256"):
        raise TokenboundError(f"{stream}: sha256 does not match the manifest")
    return stream, data


def measured_message_bits(path: str | Path) -> tuple[int, dict[str, int]]:
    """(message bits, breakdown) of a saved Markov model, measured from its bitstream (docs/compression.md).

    The bitstream's exact bit length with its CRC32 and header (version, V, eot, order, smoothing) decoded, plus
    the recomputed Elias-gamma prefix of that length. The manifest's ``message_bits``, ``payload_bits`` and
    ``message_bits_breakdown`` must agree, else a one-line TokenboundError names the manifest and the bitstream.
    This, not the manifest's number, is what a certificate charges and what ``tokenbound verify`` re-checks.
    """
    path = Path(path)
    man = read_manifest(path, KIND_MARKOV)
    stream, data = verified_bitstream(path, man)
    read_header(data, str(stream))
    payload, prefix = code_length_bits(len(data))
    breakdown = {"payload_bits": payload, "prefix_bits": prefix}
    recorded = man.get("message_bits_breakdown") or {}
    for key, got in (("message_bits", man.get("message_bits")), ("payload_bits", man.get("payload_bits")),
                     ("message_bits_breakdown.payload_bits", recorded.get("payload_bits")),
                     ("message_bits_breakdown.prefix_bits", recorded.get("prefix_bits"))):
        want = payload + prefix if key == "message_bits" else breakdown[key.rpartition(".")[2]]
        if got != want:
            raise TokenboundError(f"{path / MANIFEST}: {key} {got!r} disagrees with the {want} bits measured "
                                  f"from {stream.name}")
    return payload + prefix, breakdown
