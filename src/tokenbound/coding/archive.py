"""The ``archive`` format: a model's files compressed by the best general-purpose compressor (docs/pretrained.md).
The compress stage's ``compress.archive.compress_archive`` chooses the codec and writes the CompressedModel;
this module holds the codecs, the byte layout and its measured message length.

Any loadable model artifact (a ``.gguf`` file, a Hugging Face directory, a tokenbound Run) is serialised to
bytes (a file as is; a directory as a canonical tar: sorted names, no timestamps, owners or modes that
vary), then compressed with each of ``CODECS`` at its strongest setting; the smallest output is kept and
verified by decompressing it. The seed paper took the message length of QuIP# checkpoints from their gzip
size; this is the same idea with the choice among 4 compressors paid for with log2(4) = 2 grid bits.

Message = header (canonical JSON: codec, layout, name, size, sha256 of the raw bytes) + payload (the
compressed bytes). Both lengths get an Elias-gamma prefix so the pair is prefix-free. The decoded state
is whatever the model loaded from the decompressed files evaluates: for a GGUF file, the dequantized
float tensors (``state_dict`` of the transformers module), so ``tokenbound.load`` of the CompressedModel
evaluates exactly the weights of that file.
"""
from __future__ import annotations

import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path
from typing import Any, Callable

from ..artifacts import MANIFEST, sha256_bytes
from ..bounds.prefix import choice_bits, elias_gamma_bits
from ..errors import TokenboundError
from .compressed import read_verified

ARCHIVE_FORMAT = "tokenbound.archive/1"
HEADER_FILE = "header.json"
PAYLOAD_FILE = "payload.bin"


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=22).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    # The frame header records the content size, so no max_output_size guess is needed.
    return zstandard.ZstdDecompressor().decompress(data)


def _brotli_compress(data: bytes) -> bytes:
    import brotli

    return brotli.compress(data, quality=11, lgwin=24)


def _brotli_decompress(data: bytes) -> bytes:
    import brotli

    return brotli.decompress(data)


# codec name -> (compress at its strongest setting, decompress). The order is fixed in advance (it is the grid).
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (lambda d: gzip.compress(d, compresslevel=9, mtime=0), gzip.decompress),
    "xz": (lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    "zstd": (_zstd_compress, _zstd_decompress),
    "brotli": (_brotli_compress, _brotli_decompress),
}


# -- serialising the source ----------------------------------------------------------------------------------
def canonical_tar(directory: Path) -> bytes:
    """A tar of `directory`'s files with sorted names and fixed metadata: equal contents give equal bytes."""
    directory = Path(directory)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = f.relative_to(directory).as_posix()
            info = tarfile.TarInfo(rel)
            info.size = f.stat().st_size
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def materialize(header: dict[str, Any], raw: bytes, dest: Path) -> Path:
    """Write the decompressed source under `dest`; returns the path to load (the file or the directory)."""
    target = dest / header["name"]
    if header["layout"] == "file":
        target.write_bytes(raw)
        return target
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as tar:
        try:
            tar.extractall(target, filter="data")  # refuses absolute paths, links out of the tree, devices
        except TypeError:  # pragma: no cover - Python without extraction filters
            for m in tar.getmembers():
                if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise TokenboundError(f"archive member {m.name!r} is not a plain relative file") from None
            tar.extractall(target)
    return target


# -- decoder -------------------------------------------------------------------------------------------------
def read_archive(path: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(header, the source's bytes) of an archive CompressedModel: both files verified, the payload decompressed
    and checked against the header's size and sha256 (the archive decoder loads the result)."""
    import json

    path = Path(path)
    header_bytes = read_verified(path, manifest, HEADER_FILE)
    blob = read_verified(path, manifest, PAYLOAD_FILE)
    try:
        header = json.loads(header_bytes)
        codec, layout, name = header["codec"], header["layout"], header["name"]
    except (ValueError, KeyError, TypeError) as e:
        raise TokenboundError(f"{path / HEADER_FILE}: not an archive header ({e})") from None
    if header.get("format") != ARCHIVE_FORMAT or codec not in CODECS or layout not in ("file", "tar") \
            or not isinstance(name, str) or not name or os.sep in name or name in (".", "..", MANIFEST):
        raise TokenboundError(f"{path / HEADER_FILE}: unsupported archive header {header!r}")
    try:
        raw = CODECS[codec][1](blob)
    except Exception as e:  # each library raises its own error type on corrupt input
        raise TokenboundError(f"{path / PAYLOAD_FILE}: {codec} data does not decompress ({e})") from None
    if len(raw) != header["size"] or sha256_bytes(raw) != header["sha256"]:
        raise TokenboundError(f"{path / PAYLOAD_FILE}: decompressed bytes do not match the header's sha256")
    return header, raw


def measured_message_bits(path: Path, manifest: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(message bits, breakdown) measured from header.json and payload.bin themselves (docs/compression.md):
    their exact bit lengths, the header decoded, the Elias-gamma prefix of each length recomputed; grid bits
    log2 of the number of codecs in the recorded method spec (all of ``CODECS`` unless ``codecs=`` names some)."""
    import json

    from .compressed import message_bits_of, parse_method

    path = Path(path)
    header_bytes = read_verified(path, manifest, HEADER_FILE)
    blob = read_verified(path, manifest, PAYLOAD_FILE)
    try:
        header = json.loads(header_bytes)
        ok = header.get("format") == ARCHIVE_FORMAT and header.get("codec") in CODECS
    except (ValueError, AttributeError) as e:
        raise TokenboundError(f"{path / HEADER_FILE}: not an archive header ({e})") from None
    if not ok:
        raise TokenboundError(f"{path / HEADER_FILE}: unsupported archive header")
    name, params = parse_method(str(manifest.get("method")))
    codecs = str(params["codecs"]).split("+") if "codecs" in params else list(CODECS)
    if name != "archive" or set(params) - {"codecs"} or len(set(codecs)) != len(codecs) \
            or any(c not in CODECS for c in codecs) or header["codec"] not in codecs:
        raise TokenboundError(f"{path / MANIFEST}: method {manifest.get('method')!r} is not an archive spec "
                              f"that offers the codec {header['codec']!r}")
    header_bits, payload_bits = 8 * len(header_bytes), 8 * len(blob)
    breakdown = {"payload_bits": payload_bits, "header_bits": header_bits,
                 "prefix_bits": elias_gamma_bits(max(header_bits, 1)) + elias_gamma_bits(max(payload_bits, 1)),
                 "grid_bits": choice_bits(len(codecs))}
    return message_bits_of(breakdown), breakdown



def file_message_bits(path: Path) -> tuple[float, dict[str, Any]]:
    """(message bits, breakdown) of a model file taken as its own code (docs/compression.md): its exact bit
    length plus the Elias-gamma code of that length, which makes the set of all files prefix-free."""
    path = Path(path)
    if not path.is_file():
        raise TokenboundError(f"{path}: not a regular file, so it cannot be its own message")
    bits = 8 * path.stat().st_size
    breakdown = {"payload_bits": bits, "header_bits": 0, "prefix_bits": elias_gamma_bits(max(bits, 1)),
                 "grid_bits": 0.0}
    return float(bits + breakdown["prefix_bits"]), breakdown

__all__ = ["ARCHIVE_FORMAT", "CODECS", "HEADER_FILE", "PAYLOAD_FILE", "canonical_tar", "file_message_bits",
           "materialize", "measured_message_bits", "read_archive"]
