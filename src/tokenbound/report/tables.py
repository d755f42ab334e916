"""Markdown tables over certificates (the `report` stage); each certificate's arithmetic is re-checked first."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..artifacts import read_json
from ..errors import TokenboundError

SCHEMA = "tokenbound.certificate/1"


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


def check_certificate(path: Path, cert: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the certificate to show, "ok" or "FAILED: reason"): its bounds recomputed from its stored statistics.

    Cheap (no model re-scoring): the statistics files are found as `tokenbound verify` finds them, their sha256
    checked, and every bound rerun with the certificate's recorded inputs (bounds.certificate.recompute). When
    that works the recomputed certificate is returned, so the numbers a report shows are the recomputed ones
    whatever the file says; when it cannot be done the stored certificate is returned with the reason, and the
    row is marked FAILED. The model and token store are not re-checked here (`tokenbound verify` does that).
    """
    from ..artifacts import sha256_file
    from ..bounds.certificate import compare, recompute
    from ..evaluate.bound import load_stats, stats_path

    try:
        stats = {}
        for key in ("stats", "document_stats"):
            if cert.get(key) is None:
                continue
            where = stats_path(cert, path, key)
            if where is None or not where.exists():
                return cert, f"FAILED: its {key} file {where} is missing"
            if sha256_file(where) != cert[key].get("sha256"):
                return cert, f"FAILED: its {key} file {where.name} was altered (sha256 differs)"
            stats[key] = load_stats(cert, path, key)
        if "stats" not in stats:
            return cert, "FAILED: names no statistics file to recompute from"
        new = recompute(cert, stats["stats"], stats.get("document_stats"))
    except TokenboundError as e:
        return cert, f"FAILED: cannot recompute ({e})"
    diffs = compare(cert, new)
    if not diffs:
        return new, "ok"
    more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
    return new, f"FAILED: {diffs[0]}{more}; recomputed numbers shown"


def certificate_row(path: Path, cert: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The numbers one table row shows for a certificate."""
    model = cert.get("model") or {}
    desc = model.get("describe") or {}
    bounds = cert.get("bounds") or {}
    tk = cert.get("top_k_error_bounds") or {}
    return {
        "name": name or cert.get("label") or path.stem,
        "kind": ("train" if not cert["inputs"].get("heldout") else "test-set, assuming the model never saw the data"
                 if ((cert.get("data") or {}).get("heldout_independence") or {}).get("established") == "assumed"
                 else "test-set"),
        "parameterization": desc.get("parameterization") or desc.get("layers") or desc.get("class", ""),
        "trainable_params": desc.get("coded_params") or desc.get("num_coded_params") or desc.get("num_params"),
        "message_bits": cert["inputs"]["message_bits"],
        "empirical_bits": cert["terms"]["empirical_bits"],
        "complexity_bits": cert["terms"]["complexity_bits"],
        "subsample_bits": cert["terms"]["subsample_bits"],
        "bound": cert["bound_bits_per_token"],
        "method": cert["method"],
        "azuma": (bounds.get("azuma") or {}).get("bound_bits_per_token"),
        "variance_adaptive": (bounds.get("variance_adaptive") or {}).get("bound_bits_per_token"),
        "document_level": (bounds.get("document_level") or {}).get("bound_bits_per_token"),
        "top1": tk.get("1"), "top10": tk.get("10"), "top100": tk.get("100"),
        "random_guess": cert["random_guess_bits"],
        "vacuous": cert["vacuous"],
        "context": cert["inputs"]["context_rule"],
        # the guaranteed rate beside what real compressors actually achieve on the same text (evaluate/compressors.py)
        "bits_per_byte": cert.get("bits_per_byte"),
        "gzip_bits_per_byte": (cert.get("reference_compressors") or {}).get("gzip_bits_per_byte"),
        "xz_bits_per_byte": (cert.get("reference_compressors") or {}).get("xz_bits_per_byte"),
    }


def _fmt_count(v: Any) -> str:
    """Bits and parameter counts: an integer with thousands separators, decimals only when fractional."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, float):
        return f"{v:,.3f}"
    return _fmt(v)


def _fmt_error_rate(v: Any) -> str:
    """A top-k error bound: min(bound, 1), which is still valid; above 1 it says nothing and is flagged."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1:
        return "1 (vacuous)"
    return _fmt(v)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


COLUMNS = [
    ("name", "model"), ("kind", "data"), ("parameterization", "parameterization"),
    ("trainable_params", "coded params"), ("message_bits", "message bits"), ("empirical_bits", "empirical"),
    ("azuma", "Azuma bound"), ("variance_adaptive", "var.-adaptive bound"), ("document_level", "doc-level bound"),
    ("bound", "headline"), ("bits_per_byte", "headline bits/byte"), ("gzip_bits_per_byte", "gzip -9 bits/byte"),
    ("xz_bits_per_byte", "xz -9e bits/byte"), ("top1", "top-1 err"), ("top10", "top-10 err"), ("top100", "top-100 err"),
    ("vacuous", "vacuous?"), ("check", "checks"),
]
FORMATS = {"message_bits": _fmt_count, "trainable_params": _fmt_count, "top1": _fmt_error_rate,
           "top10": _fmt_error_rate, "top100": _fmt_error_rate}


def markdown_table(rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(FORMATS.get(key, _fmt)(r.get(key)).replace("|", "\\|") for key, _ in columns)
            + " |" for r in rows]
    return "\n".join([head, sep, *body])
