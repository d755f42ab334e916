"""`tokenbound verify CERT`: re-check every number and hash of a certificate (docs/design.md §1).

Checks, each reported as one line when it fails:
1. the statistics files exist and their sha256 matches the certificate;
2. every bound recomputes to the same numbers from those statistics (bounds.certificate.recompute);
3. the token store's files still hash to the recorded store sha256, and the statistics' control variate (if any)
   recomputes from the store to the same values;
4. the model re-decodes (a CompressedModel from its bitstream) to the weights that were scored, and its message
   length, measured from its bitstream files (docs/compression.md), is the one the certificate charged;
5. the sampling plan rebuilt from the statistics' seed gives exactly the stored positions, and a random subset of
   the draws (fresh OS randomness; default 32, or all) re-scored with the model gives the stored prob, rank and
   entropy within a float tolerance (evaluate/rescore.py, docs/scoring.md). Skipped, and reported as not
   re-scored, with ``check_model=False`` or ``rescore=0``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import (KIND_COMPRESSED, MANIFEST, check_target, read_json, read_manifest,
                         resolve_recorded_path, sha256_file)
from ..bounds.certificate import compare, recompute
from ..data.store import TokenStore, store_manifest
from ..errors import TokenboundError
from .bound import artifact_sha256, load_stats, message_length, stats_path
from .control import check_control
from .rescore import DEFAULT_RESCORE, RESCORE_TOL_BITS, check_count, check_tolerance


def verify(cert_path: Path, *, check_model: bool = True, device: str = "cpu", data: Path | None = None,
           model: Path | None = None, rescore: int | None = DEFAULT_RESCORE, rescore_seed: int | None = None,
           rescore_tol: float = RESCORE_TOL_BITS, report: list[str] | None = None) -> list[str]:
    """Return the list of differences ([] when everything re-checks).

    With `check_model`, `rescore` random draws of the statistics (None: all; 0: none) are re-scored with the
    model and compared with the stored numbers (evaluate/rescore.py, docs/scoring.md); `rescore_seed` repeats
    a previous choice of draws (default: fresh OS randomness). Lines saying what was (or was not) re-scored
    are appended to `report` when given.

    The certificate's model and store are found by their paths relative to the certificate (or, for older
    certificates, to the current directory); `data` / `model` point at them instead when they were moved.
    A store or model that cannot be found, or a reference to anything but a store / model (a device, a FIFO,
    statistics outside the certificate's folder), is a one-line TokenboundError rather than a difference.
    """
    cert_path = Path(cert_path)
    check_count(rescore), check_tolerance(rescore_tol)  # bad input is refused before any work
    cert = read_json(cert_path, what="certificate")
    if not isinstance(cert, dict) or "inputs" not in cert:
        raise TokenboundError(f"{cert_path}: not a tokenbound certificate")
    problems: list[str] = []

    stats = {}
    for key in ("stats", "document_stats"):
        ref = cert.get(key)
        if ref is None:
            continue
        path = stats_path(cert, cert_path, key)
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

    data_ref = cert.get("data") or {}
    if data_ref.get("path") or data is not None:
        store_path = resolve_data_path(cert, cert_path, data)
        store_problems = _check_store(store_path, data_ref.get("sha256"))
        problems += store_problems
        if not store_problems and "stats" in stats and stats["stats"].control_bits is not None:
            problems += check_control(stats["stats"], TokenStore.open(store_path))
    loaded: dict[str, Any] = {}
    if check_model:
        model_ref = cert.get("model") or {}
        if model_ref.get("path") or model is not None:
            model_ref = {**model_ref, "path": str(resolve_model_path(cert, cert_path, model))}
        model_problems = _check_model(model_ref, cert["inputs"], device, loaded)
        problems += model_problems
        if not model_problems and rescore != 0:
            store_ok = (data_ref.get("path") or data is not None) and not store_problems
            rescored = _rescore(stats, model_ref, store_path if store_ok else None, loaded, rescore, rescore_seed,
                                rescore_tol, device, report)
            scored_on = (cert.get("provenance") or {}).get("device")
            if rescored and scored_on and scored_on != device:
                _note(report, f"the statistics were scored on {scored_on} and re-scored on {device}: float differences "
                              f"beyond --rescore-tol {rescore_tol:g} may be the devices', not tampering")
            problems += rescored
        elif rescore != 0:
            _note(report, "model check failed: statistics not re-scored")
    if not check_model or rescore == 0:
        _note(report, "statistics NOT re-scored with the model ("
              + ("--skip-model" if not check_model else "--rescore 0") + ")")
    return problems


def _note(report: list[str] | None, line: str) -> None:
    if report is not None:
        report.append(line)


def _rescore(stats: dict[str, Any], model_ref: dict[str, Any], store_path: Path | None, loaded: dict[str, Any],
             count: int | None, seed: int | None, tol: float, device: str, report: list[str] | None) -> list[str]:
    """Re-score random draws of the token statistics and of the document statistics (evaluate/rescore.py)."""
    from ..models.loading import load
    from .rescore import rescore_stats

    if store_path is None:
        return ["rescore: the certified token store is not available, so the statistics cannot be re-scored"]
    if not stats:
        return []
    store = TokenStore.open(store_path)
    lm = loaded.get("model")
    if lm is None:
        try:
            lm = load(Path(model_ref["path"]), device=device)
        except TokenboundError as e:
            return [f"rescore: {e}"]
    seed = resolve_seed(seed)
    out = []
    for key in ("stats", "document_stats"):
        if key not in stats:
            continue
        try:
            result = rescore_stats(lm, stats[key], store, count, key=key, seed=seed, tol_bits=tol, device=device)
        except TokenboundError as e:
            out.append(f"rescore {key}: {e}")
            continue
        out += result.problems
        _note(report, result.summary())
    return out


def resolve_seed(seed: int | None) -> int:
    """The rescore seed: the caller's, or fresh OS randomness (evaluate/rescore.py)."""
    from .rescore import fresh_seed

    return fresh_seed() if seed is None else int(seed)


def resolve_data_path(cert: dict[str, Any], cert_path: Path, override: Path | None = None) -> Path:
    """The certified TokenStore's directory: `override` (``--data``) or the certificate's recorded path."""
    if override is not None:
        return check_target(Path(override), expect="dir", marker=MANIFEST, param="data")
    ref = cert.get("data") or {}
    return resolve_recorded_path(ref, Path(cert_path).parent, "data", expect="dir", sha256=ref.get("sha256"),
                                 identify=lambda p: read_manifest(p).get("sha256"), flag="--data DIR")


def resolve_model_path(cert: dict[str, Any], cert_path: Path, override: Path | None = None) -> Path:
    """The certified model artifact: `override` (``--model``) or the certificate's recorded path."""
    ref = cert.get("model") or {}
    expect, marker = {"gguf": ("file", MANIFEST), "hf": ("dir", "config.json")}.get(ref.get("type"),
                                                                                    ("dir", MANIFEST))
    if override is not None:
        return check_target(Path(override), expect=expect, marker=marker, param="model")
    return resolve_recorded_path(ref, Path(cert_path).parent, "model", expect=expect, marker=marker,
                                 sha256=ref.get("artifact_sha256"), identify=artifact_sha256, flag="--model PATH")


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


def _check_model(model: dict[str, Any], inputs: dict[str, Any], device: str,
                 loaded: dict[str, Any] | None = None) -> list[str]:
    """The model re-decodes to what was scored, and its message length, measured from its bitstream files by
    the function `bound` charged it with (evaluate.bound.message_length), is the certified one. A decoded
    CompressedModel is left in ``loaded["model"]`` for re-scoring."""
    path = model.get("path")
    if not path:
        return ["model: the certificate names no model path"]
    path = Path(path)
    if not path.exists():
        return [f"model: {path} is missing"]
    out = []
    if model.get("type") == KIND_COMPRESSED:
        from ..coding.hashing import state_sha256
        from ..models.decoders import decode_state

        try:
            lm, state, _ = decode_state(path, device=device)
        except TokenboundError as e:
            return [f"model: {e}"]
        if state_sha256(state) != model.get("sha256"):
            out.append(f"model: {path} decodes to weights whose sha256 differs from the scored model's")
        elif loaded is not None:
            loaded["model"] = lm
    elif model.get("artifact_sha256") and artifact_sha256(path) != model["artifact_sha256"]:
        out.append(f"model: {path} was changed since it was certified (sha256 differs)")
    if out:
        return out
    from ..models.loading import artifact_type

    measure = (model.get("message_details") or {}).get("measure")
    if measure == "none" and not inputs.get("heldout"):
        return ["model: the certificate charges no message ('none') but is not a test-set certificate"]
    try:
        msg = message_length(path, model.get("type") or artifact_type(path), device=device,
                             measure=measure if measure in ("file", "none") else None)
    except TokenboundError as e:
        return [f"model: {e}"]
    if msg.model_sha256 != model.get("sha256"):
        out.append(f"model: {path} (as measured for its message length) is not the scored model (sha256 differs)")
    if not inputs.get("heldout") and float(msg.bits) != float(inputs["message_bits"]):
        out.append(f"model: message length {msg.bits:g} bits, measured from {path}'s bitstream, differs from the "
                   f"certified {inputs['message_bits']}")
    return out
