"""Markdown tables over certificates (DESIGN §1: the `report` stage)."""
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


def certificate_row(path: Path, cert: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The numbers one table row shows for a certificate."""
    model = cert.get("model") or {}
    desc = model.get("describe") or {}
    bounds = cert.get("bounds") or {}
    tk = cert.get("top_k_error_bounds") or {}
    return {
        "name": name or cert.get("label") or path.stem,
        "kind": "test-set" if cert["inputs"].get("heldout") else "train",
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
    }


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
    ("bound", "headline"), ("top1", "top-1 err"), ("top10", "top-10 err"), ("top100", "top-100 err"),
    ("vacuous", "vacuous?"),
]


def markdown_table(rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(key)) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])
