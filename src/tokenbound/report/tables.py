"""Markdown tables over certificates (the `report` stage); each certificate's arithmetic is re-checked first."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..artifacts import read_json
from ..bounds.schema import SCHEMA, Certificate
from ..errors import TokenboundError
from .flat import certificate_numbers


def find_certificates(paths: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Certificates named directly, or found (recursively, sorted) inside directories."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                obj = read_json(f)
                if isinstance(obj, dict) and obj.get("schema") == SCHEMA:
                    out.append((f, obj))
        elif p.exists():
            obj = read_json(p, what="certificate")
            if not (isinstance(obj, dict) and obj.get("schema") == SCHEMA):
                raise TokenboundError(f"{p}: not a tokenbound certificate")
            out.append((p, obj))
        else:
            raise TokenboundError(f"{p}: no such file or directory")
    if not out:
        raise TokenboundError("no certificates found in " + ", ".join(map(str, paths)))
    return out


def check_certificate(path: Path, cert: dict[str, Any]) -> tuple[Certificate, str]:
    """(the certificate to show, "ok" or "FAILED: reason"): its bounds recomputed from its stored statistics.

    Cheap (no model re-scoring): the statistics files are found as `tokenbound verify` finds them, their sha256
    checked, and every bound rerun with the certificate's recorded inputs (bounds.certificate.recompute). When
    that works the recomputed certificate is returned, so the numbers a report shows are the recomputed ones
    whatever the file says; when it cannot be done the stored certificate is returned with the reason, and the
    row is marked FAILED. The model and token store are not re-checked here (`tokenbound verify` does that).
    A certificate that cannot even be read as one is a one-line TokenboundError naming its file.
    """
    from ..bounds.certificate import compare

    def stored(why: str) -> tuple[Certificate, str]:
        try:
            return Certificate.from_json(cert), why
        except TokenboundError as e:
            raise TokenboundError(f"{path}: {e} ({why})") from None

    try:
        new = _recompute(path, cert)
    except TokenboundError as e:
        new = f"FAILED: cannot recompute ({e})"
    if isinstance(new, str):
        return stored(new)
    diffs = compare(cert, new)
    if not diffs:
        return new, "ok"
    more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
    return new, f"FAILED: {diffs[0]}{more}; recomputed numbers shown"


def _recompute(path: Path, cert: dict[str, Any]) -> Certificate | str:
    """The certificate recomputed from its checked statistics, or why that cannot be done ("FAILED: ...")."""
    from ..artifacts import sha256_file
    from ..bounds.certificate import recompute
    from ..evaluate.bound import load_stats, stats_path

    stats = {}
    for key in ("stats", "document_stats"):
        if cert.get(key) is None:
            continue
        where = stats_path(cert, path, key)
        if where is None or not where.exists():
            return f"FAILED: its {key} file {where} is missing"
        if sha256_file(where) != cert[key].get("sha256"):
            return f"FAILED: its {key} file {where.name} was altered (sha256 differs)"
        stats[key] = load_stats(cert, path, key)
    if "stats" not in stats:
        return "FAILED: names no statistics file to recompute from"
    return recompute(cert, stats["stats"], stats.get("document_stats"))


def certificate_row(path: Path, cert: Certificate, name: str | None = None) -> dict[str, Any]:
    """The numbers one table row shows for a certificate (report/flat.py) and its name."""
    return {"name": name or cert.extra.get("label") or path.stem, **certificate_numbers(cert)}


COLUMNS = [
    ("name", "model"), ("kind", "data"), ("parameterization", "parameterization"),
    ("trainable_params", "coded params"), ("message_bits", "message bits"), ("empirical", "empirical"),
    ("azuma", "Azuma bound"), ("variance_adaptive", "var.-adaptive bound"), ("document_level", "doc-level bound"),
    ("bound", "headline"), ("bits_per_byte", "headline bits/byte"), ("gzip_bits_per_byte", "gzip -9 bits/byte"),
    ("xz_bits_per_byte", "xz -9e bits/byte"), ("top1", "top-1 err"), ("top10", "top-10 err"), ("top100", "top-100 err"),
    ("vacuous", "vacuous?"), ("check", "checks"),
]
