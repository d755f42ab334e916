"""The CompressedModel artifact (docs/design.md §4): a bitstream, its message length, and a verified decoder.

A CompressedModel is a directory holding
- the bitstream file(s) (e.g. ``payload.bin``), each listed with its sha256 in the manifest;
- ``manifest.json`` with ``kind`` = ``artifacts.KIND_COMPRESSED``, ``method`` (the spec string),
  ``decoder`` (one of ``DECODER_NAMES``), ``source`` ({"type", "path", "sha256"}), ``message_bits`` (total,
  prefix-free: what the bound uses), ``message_breakdown`` ({"payload_bits", "header_bits", "prefix_bits",
  "grid_bits", "tensors": {name: bits}}), ``decoded_sha256`` (``coding.hashing.state_sha256`` of the decoded
  tensors that are evaluated), ``files`` ({name: sha256}), ``extra_bits`` ({reason: bits}) and
  ``bits_per_coded_param`` when known.

Invariants:
- ``message_bits == payload_bits + header_bits + prefix_bits + grid_bits`` (checked when written and read).
  ``extra_bits`` are choices a certificate must also pay for; they are listed, not folded into message_bits.
- A decoder rebuilds the model *only* from the listed files (every one verified by sha256 first, here), and
  the state it evaluates must hash to ``decoded_sha256`` (checked by the decoding entry point).
"""
from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Any

from ..artifacts import (KIND_COMPRESSED, MANIFEST, atomic_output_dir, file_inside, make_manifest, path_record,
                         read_manifest, sha256_bytes, sha256_file, write_bytes, write_json)
from ..errors import TokenboundError

# The formats a CompressedModel may name as its ``decoder``. Each format's codec and measurer live in coding/;
# the decoder that rebuilds a network from the codec's output sits above coding/ and imports it, never the
# other way round (docs/design.md §2).
DECODER_NAMES = ("quant", "ptq", "archive")
# decoder key -> "module:function" with signature (path: Path, manifest: dict) -> (message bits, breakdown),
#   measured from that format's bitstream files alone (see ``measured_message_bits``)
MEASURERS = {
    "quant": "tokenbound.coding.quantize:measured_message_bits",
    "ptq": "tokenbound.coding.ptq:measured_message_bits",
    "archive": "tokenbound.coding.archive:measured_message_bits",
}

SOURCE_TYPES = ("run", "hf", "gguf")
BREAKDOWN_PARTS = ("payload_bits", "header_bits", "prefix_bits", "grid_bits")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# Float tolerance when checking that the parts of the breakdown add up to message_bits.
_SUM_TOL = 1e-6


def resolve(ref: str) -> Any:
    """The function a ``"module:function"`` reference names (imported on first use)."""
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


# -- method specs ------------------------------------------------------------------------------------------
def _parse_value(text: str) -> int | float | str:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_method(spec: str) -> tuple[str, dict[str, int | float | str]]:
    """``"ptq:bits=2,group=64,algo=gptq"`` -> ``("ptq", {"bits": 2, "group": 64, "algo": "gptq"})``.

    Values become int if they parse as int, else float, else stay strings. ``"archive"`` -> ("archive", {}).
    Errors name the ``method`` parameter.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise TokenboundError("empty method spec (e.g. 'quant:levels=11', 'ptq:bits=4', 'archive')", param="method")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not _NAME_RE.match(name):
        raise TokenboundError(f"method name {name!r} is not a plain word", param="method", value=repr(spec))
    params: dict[str, int | float | str] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                raise TokenboundError(f"expected key=value, got {item.strip()!r}", param="method", value=repr(spec))
            if not _NAME_RE.match(key):
                raise TokenboundError(f"parameter name {key!r} is not a plain word", param="method", value=repr(spec))
            if key in params:
                raise TokenboundError(f"parameter {key!r} given twice", param="method", value=repr(spec))
            params[key] = _parse_value(value)
    return name, params


def format_method(name: str, params: dict[str, Any]) -> str:
    """Inverse of parse_method (parameters in the given order): the canonical spec string recorded in manifests."""
    if not params:
        return name
    return name + ":" + ",".join(f"{k}={v}" for k, v in params.items())


# -- message length ----------------------------------------------------------------------------------------
def message_bits_of(breakdown: dict[str, Any]) -> float:
    """Total prefix-free message length: payload + header + prefix + grid bits (docs/theory.md §3)."""
    missing = [k for k in BREAKDOWN_PARTS if k not in breakdown]
    if missing:
        raise ValueError(f"message breakdown lacks {missing}")
    total = 0.0
    for k in BREAKDOWN_PARTS:
        v = float(breakdown[k])
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"message breakdown {k} must be finite and >= 0, got {breakdown[k]!r}")
        total += v
    return total


def _check_source(source: dict[str, Any]) -> None:
    if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES:
        raise ValueError(f"source must be a dict with type in {SOURCE_TYPES}, got {source!r}")
    for k in ("path", "sha256"):
        if k not in source:
            raise ValueError(f"source lacks {k!r}")


# -- writing -----------------------------------------------------------------------------------------------
def write_compressed(out: Path, *, method: str, decoder: str, source: dict[str, Any], files: dict[str, bytes],
                     breakdown: dict[str, Any], decoded_sha256: str, force: bool = False,
                     **extra: Any) -> dict[str, Any]:
    """Write a CompressedModel directory atomically and return its manifest.

    ``files``: bitstream name -> bytes (plain file names; not manifest.json). ``breakdown`` must hold
    payload/header/prefix/grid bits (and optionally "tensors": {name: bits}); message_bits is their sum. If
    ``extra`` carries ``message_bits`` it must agree with that sum. ``extra`` may carry ``extra_bits``
    ({reason: bits}), ``num_coded_params`` (then ``bits_per_coded_param`` = message_bits / num_coded_params
    unless given) and anything else useful; all of it goes into the manifest.
    """
    if decoder not in DECODER_NAMES:
        raise ValueError(f"decoder {decoder!r} is not one of {sorted(DECODER_NAMES)}")
    _check_source(source)
    if not files:
        raise ValueError("a CompressedModel needs at least one bitstream file")
    for name, data in files.items():
        if name == MANIFEST or not _FILE_RE.match(name):
            raise ValueError(f"bitstream file name {name!r} is not allowed")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"bitstream file {name!r} must be bytes, got {type(data).__name__}")
    breakdown = dict(breakdown)
    breakdown.setdefault("tensors", {})
    total = message_bits_of(breakdown)
    given = extra.pop("message_bits", None)
    if given is not None and abs(float(given) - total) > _SUM_TOL * max(1.0, total):
        raise ValueError(f"message_bits {given} != payload+header+prefix+grid = {total}")
    extra.setdefault("extra_bits", {})
    n_coded = extra.get("num_coded_params")
    if n_coded and "bits_per_coded_param" not in extra:
        extra["bits_per_coded_param"] = total / float(n_coded)
    hashes = {name: sha256_bytes(bytes(data)) for name, data in files.items()}
    if isinstance(source["path"], str) and source.get("relative_to") is None:  # relative to `out` (artifacts.py)
        source = {**source, **path_record(source["path"], out)}
    manifest = make_manifest(KIND_COMPRESSED, method=method, decoder=decoder, source=dict(source),
                             message_bits=total, message_breakdown=breakdown, decoded_sha256=decoded_sha256,
                             files=hashes, **extra)
    with atomic_output_dir(out, force=force) as tmp:
        for name, data in files.items():
            write_bytes(tmp / name, bytes(data))
        write_json(tmp / MANIFEST, manifest)
    return manifest


# -- reading -----------------------------------------------------------------------------------------------
def read_compressed_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a CompressedModel, checked for the fields every decoder relies on."""
    path = Path(path)
    man = read_manifest(path, KIND_COMPRESSED)
    for key in ("decoder", "files", "decoded_sha256", "message_bits", "message_breakdown"):
        if key not in man:
            raise TokenboundError(f"{path / MANIFEST}: lacks {key!r}")
    if man["decoder"] not in DECODER_NAMES:
        raise TokenboundError(f"{path / MANIFEST}: unknown decoder {man['decoder']!r} (known: {sorted(DECODER_NAMES)})")
    try:
        total = message_bits_of(man["message_breakdown"])
    except ValueError as e:
        raise TokenboundError(f"{path / MANIFEST}: {e}") from None
    if abs(total - float(man["message_bits"])) > _SUM_TOL * max(1.0, total):
        raise TokenboundError(f"{path / MANIFEST}: message_bits {man['message_bits']} is not the sum of its "
                              f"breakdown ({total})")
    return man


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Check that every listed bitstream file exists and has its recorded sha256 (one-line error naming it)."""
    path = Path(path)
    for name, digest in manifest["files"].items():
        f = path / name
        if not _FILE_RE.match(name) or not file_inside(path, name, f"{path / MANIFEST}: files").is_file():
            raise TokenboundError(f"{f}: bitstream file missing")
        if sha256_file(f) != digest:
            raise TokenboundError(f"{f}: sha256 does not match the manifest (corrupted bitstream)")


def read_verified(path: Path, manifest: dict[str, Any], name: str) -> bytes:
    """Bytes of one listed bitstream file, verified against its sha256 (for decoders)."""
    f = Path(path) / name
    if name not in manifest["files"]:
        raise TokenboundError(f"{Path(path) / MANIFEST}: does not list {name}")
    file_inside(path, name, f"{Path(path) / MANIFEST}: files")  # only a regular file inside the model's folder
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise TokenboundError(f"{f}: bitstream file missing") from None
    if sha256_bytes(data) != manifest["files"][name]:
        raise TokenboundError(f"{f}: sha256 does not match the manifest (corrupted bitstream)")
    return data


def _agrees(recorded: Any, measured: float) -> bool:
    try:
        return abs(float(recorded) - float(measured)) <= _SUM_TOL * max(1.0, abs(float(measured)))
    except (TypeError, ValueError):
        return False


def measured_message_bits(path: Path) -> tuple[float, dict[str, Any]]:
    """(message bits, breakdown) of a CompressedModel, measured from its bitstream files (docs/compression.md).

    The format's own measurer (``MEASURERS``) reads the files the decoder reads and recomputes every part of the
    length from them; the manifest's ``message_bits`` and each part of its ``message_breakdown`` must agree, or
    a one-line TokenboundError names the manifest, the part and the file(s) measured. This, never the manifest's
    number, is the length a certificate charges (``tokenbound bound``) and re-checks (``tokenbound verify``).
    """
    path = Path(path)
    manifest = read_compressed_manifest(path)
    bits, breakdown = resolve(MEASURERS[manifest["decoder"]])(path, manifest)
    files = ", ".join(sorted(manifest["files"]))
    recorded = manifest["message_breakdown"]
    if not _agrees(manifest["message_bits"], bits):
        raise TokenboundError(f"{path / MANIFEST}: message_bits {manifest['message_bits']!r} disagrees with the "
                              f"{bits:g} bits measured from {files}")
    for key in BREAKDOWN_PARTS:
        if not _agrees(recorded.get(key), breakdown[key]):
            raise TokenboundError(f"{path / MANIFEST}: message_breakdown.{key} {recorded.get(key)!r} disagrees "
                                  f"with the {breakdown[key]:g} bits measured from {files}")
    return float(bits), dict(breakdown)
