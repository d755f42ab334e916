"""Small text helpers for what the commands print."""
from __future__ import annotations


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 document"``, ``"2 documents"``, ``"1,200 tokens"``: a count with thousands separators and its noun."""
    return f"{int(n):,} {noun if int(n) == 1 else (plural_form or noun + 's')}"
