"""`tokenbound verify CERT`: re-check every number and hash of a certificate (DESIGN §1).

Checks, each reported as one line when it fails:
1. the statistics files exist and their sha256 matches the certificate;
2. every bound recomputes to the same numbers from those statistics (bounds.certificate.recompute);
3. the token store's files still hash to the recorded store sha256, and the statistics' control variate (if any)
   recomputes from the store to the same values;
4. the model re-decodes (a CompressedModel from its bitstream) to the weights that were scored, and its message
   length is the one the certificate charged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import KIND_COMPRESSED, read_json, read_manifest, sha256_file
from ..bounds.certificate import compare, recompute
from ..data.store import TokenStore, store_manifest
from ..errors import TokenboundError
from .bound import artifact_sha256, load_stats
from .control import check_control


def verify(cert_path: Path, *, check_model: bool = True, device: str = "cpu") -> list[str]:
    """Return the list of differences ([] when everything re-checks)."""
    cert_path = Path(cert_path)
    cert = read_json(cert_path, what="certificate")
    if not isinstance(cert, dict) or "inputs" not in cert:
        raise TokenboundError(f"{cert_path}: not a tokenbound certificate")
    problems: list[str] = []

    stats = {}
    for key in ("stats", "document_stats"):
        ref = cert.get(key)
        if ref is None:
            continue
        path = cert_path.parent / ref["path"]
        if not path.exists():
            problems.append(f"{key}: file {path} is missing")
            continue
        if sha256_file(path) != ref["sha256"]:
            problems.append(f"{key}: file {path} was altered (sha256 differs from the certificate)")
            continue
        stats[key] = load_stats(cert, cert_path, key)
    if "stats" not in cert:
        problems.append("stats: the certificate names no statistics file")
    if "stats" in stats and ("document_stats" in stats or "document_stats" not in cert):
        problems += [f"bounds: {d}" for d in compare(cert, recompute(cert, stats["stats"],
                                                                      stats.get("document_stats")))]

    data = cert.get("data") or {}
    if data.get("path"):
        store_problems = _check_store(Path(data["path"]), data.get("sha256"))
        problems += store_problems
        if not store_problems and "stats" in stats and stats["stats"].control_bits is not None:
            problems += check_control(stats["stats"], TokenStore.open(Path(data["path"])))
    if check_model:
        problems += _check_model(cert.get("model") or {}, cert["inputs"], device)
    return problems


def _check_store(path: Path, expected: str | None) -> list[str]:
    try:
        store = TokenStore.open(path)
    except TokenboundError as e:
        return [f"data: {e}"]
    man = store_manifest(path, store.vocab_size, store.eot, store.num_tokens, store.num_documents,
                         num_bytes=None, tokenizer_spec=None, source=None)
    if man["sha256"] != expected:
        return [f"data: the token store {path} no longer hashes to the certified sha256"]
    return []


def _check_model(model: dict[str, Any], inputs: dict[str, Any], device: str) -> list[str]:
    path = model.get("path")
    if not path:
        return ["model: the certificate names no model path"]
    path = Path(path)
    if not path.exists():
        return [f"model: {path} is missing"]
    out = []
    if model.get("type") == KIND_COMPRESSED:
        from ..coding.compressed import decode_state
        from ..coding.hashing import state_sha256

        man = read_manifest(path, KIND_COMPRESSED)
        try:
            _, state, _ = decode_state(path, device=device)
        except TokenboundError as e:
            return [f"model: {e}"]
        if state_sha256(state) != model.get("sha256"):
            out.append(f"model: {path} decodes to weights whose sha256 differs from the scored model's")
        if not inputs.get("heldout") and float(man["message_bits"]) != float(inputs["message_bits"]):
            out.append(f"model: message length {man['message_bits']} bits differs from the certified "
                       f"{inputs['message_bits']}")
    elif model.get("artifact_sha256") and artifact_sha256(path) != model["artifact_sha256"]:
        out.append(f"model: {path} was changed since it was certified (sha256 differs)")
    return out
