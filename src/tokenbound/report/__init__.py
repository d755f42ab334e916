"""Reports over certificates: a Markdown table and PNG plots (`tokenbound report`)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..artifacts import write_bytes
from .plots import plot_bound_vs_message, plot_terms
from .tables import certificate_row, find_certificates, markdown_table


def write_report(paths: Iterable[Path], out: Path, title: str = "tokenbound report",
                 names: dict[str, str] | None = None) -> str:
    """Write `out` (Markdown) and two PNGs beside it; return the Markdown text."""
    out = Path(out)
    certs = find_certificates(paths)
    rows = [certificate_row(p, c, (names or {}).get(str(p))) for p, c in certs]
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    fig1 = plot_bound_vs_message(rows, Path(f"{stem}_bound_vs_message.png"))
    fig2 = plot_terms(rows, Path(f"{stem}_terms.png"))
    any_cert = certs[0][1]
    text = "\n".join([
        f"# {title}", "",
        f"All numbers are bits per token (top-k: error rate), at confidence 1 − δ = {1 - any_cert['inputs']['delta']:g}. "
        f"Random guess: log2 V = {any_cert['random_guess_bits']:.3f} bits/token. \"train\" rows are generalization "
        "bounds on the training tokens; \"test-set\" rows certify held-out data with message length 0.", "",
        markdown_table(rows), "",
        f"![bound vs message length]({fig1.name})", "",
        f"![terms of each bound]({fig2.name})", "",
        "Sources: " + ", ".join(f"`{p}`" for p, _ in certs), "",
    ])
    write_bytes(out, text.encode())
    return text
