"""Reports over certificates: a Markdown table and PNG plots (`tokenbound report`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..artifacts import ensure_parent_dir, is_regular_file, remove_empty_dirs, write_bytes
from ..errors import TokenboundError
from .plots import plot_bound_vs_message, plot_terms
from .flat import markdown_table
from .tables import COLUMNS, certificate_row, check_certificate, find_certificates


def checked_rows(certs, names: dict[str, str] | None = None) -> list[dict]:
    """One table row per certificate, from its recomputed numbers, with its "check" ("ok" / "FAILED: …")."""
    rows = []
    for p, c in certs:
        shown, check = check_certificate(p, c)
        rows.append({**certificate_row(p, shown, (names or {}).get(str(p))), "check": check})
    return rows


def write_report(paths: Iterable[Path], out: Path, title: str = "tokenbound report",
                 names: dict[str, str] | None = None, strict: bool = False) -> str:
    """Write `out` (Markdown) and two PNGs beside it; return the Markdown text.

    Every certificate is re-checked first (its bounds recomputed from its statistics): the table shows the
    recomputed numbers and a "checks" column; with `strict`, any certificate that fails is a one-line error and
    nothing is written.
    """
    out = Path(out)
    if out.is_dir():
        raise TokenboundError(f"is a directory; give the Markdown file to write, e.g. {out / 'report.md'}",
                              param="out", value=out)
    certs = find_certificates(paths)
    rows = checked_rows(certs, names)
    failed = [(p, r["check"]) for (p, _), r in zip(certs, rows) if r["check"] != "ok"]
    if strict and failed:
        why = failed[0][1].removeprefix("FAILED: ").removesuffix("; recomputed numbers shown")
        raise TokenboundError(f"{failed[0][0]}: does not re-check: {why}"
                              + (f" (and {len(failed) - 1} more certificates)" if len(failed) > 1 else ""))
    made = ensure_parent_dir(out, "out")
    stem = out.with_suffix("")
    fig1, fig2 = Path(f"{stem}_bound_vs_message.png"), Path(f"{stem}_terms.png")
    # The plots are drawn under temporary names and renamed only once the Markdown is written: a failed report
    # leaves nothing behind (and no older report's plots replaced).
    tmp1, tmp2 = (p.with_name(f".{p.stem}.{os.getpid()}.tmp.png") for p in (fig1, fig2))
    try:
        try:
            return _write(rows, certs, out, title, tmp1, tmp2, fig1, fig2)
        except OSError as e:
            raise TokenboundError(f"cannot write in {out.parent} ({e.strerror or e})", param="out",
                                  value=out) from None
    except BaseException:
        for p in (tmp1, tmp2):
            p.unlink(missing_ok=True)
        remove_empty_dirs(made)
        raise


def _check_note(rows) -> str:
    bad = sum(r["check"] != "ok" for r in rows)
    note = ("Checks: each certificate's bounds were recomputed from its stored statistics (no re-scoring; "
            "`tokenbound verify` also re-checks the model and the data); the table shows the recomputed numbers. "
            "Top-k error bounds are shown as min(bound, 1), flagged when they say nothing.")
    return note + (f" **{bad} of {len(rows)} certificates FAILED the check** (see the checks column)." if bad else
                   f" All {len(rows)} re-check.")


def _write(rows, certs, out: Path, title: str, tmp1: Path, tmp2: Path, fig1: Path, fig2: Path) -> str:
    plot_bound_vs_message(rows, tmp1)
    plot_terms(rows, tmp2)
    any_cert = certs[0][1]
    text = "\n".join([
        f"# {title}", "",
        f"All numbers are bits per token (top-k: error rate), at confidence 1 − δ = {1 - any_cert['inputs']['delta']:g}. "
        f"Random guess: log2 V = {any_cert['random_guess_bits']:.3f} bits/token. \"train\" rows are generalization "
        "bounds on the training tokens; \"test-set\" rows certify held-out data with message length 0.", "",
        markdown_table(rows, COLUMNS), "",
        _check_note(rows), "",
        f"![bound vs message length]({fig1.name})", "",
        f"![terms of each bound]({fig2.name})", "",
        "Sources: " + ", ".join(f"`{p}`" for p, _ in certs), "",
    ])
    for tmp in (tmp1, tmp2):
        if not is_regular_file(tmp):
            raise TokenboundError(f"the plot {tmp} was not written", param="out", value=out)
    write_bytes(out, text.encode(), "out")
    os.replace(tmp1, fig1)
    os.replace(tmp2, fig2)
    return text
