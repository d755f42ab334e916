"""PNG plots over certificate rows (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Lay out, write as PNG (120 dpi) and close `fig`; returns `out`."""
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def plot_bound_vs_message(rows: list[dict[str, Any]], out: Path) -> Path:
    """Headline bound against message length (log scale), with the random-guess line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    train = [r for r in rows if r["kind"] == "train" and r["message_bits"] > 0]
    for r in train:
        ax.scatter(r["message_bits"], r["bound"], s=36)
        ax.annotate(r["name"], (r["message_bits"], r["bound"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    if train:
        ax.axhline(train[0]["random_guess"], color="grey", ls="--", lw=1, label="random guess (log2 V)")
        ax.set_xscale("log")
    ax.set_xlabel("message length (bits)")
    ax.set_ylabel("bound (bits per token)")
    ax.set_title("Token-level bound against model description length")
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, out)


def plot_terms(rows: list[dict[str, Any]], out: Path) -> Path:
    """Stacked bar per certificate: empirical + complexity + subsampling = headline bound."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(rows) + 2), 4.2))
    names = [r["name"] for r in rows]
    emp = [r["empirical_bits"] for r in rows]
    comp = [r["complexity_bits"] for r in rows]
    sub = [r["subsample_bits"] for r in rows]
    x = range(len(rows))
    ax.bar(x, emp, label="empirical")
    ax.bar(x, comp, bottom=emp, label="complexity")
    ax.bar(x, sub, bottom=[a + b for a, b in zip(emp, comp)], label="subsampling")
    if rows:
        ax.axhline(rows[0]["random_guess"], color="grey", ls="--", lw=1, label="random guess")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("bits per token")
    ax.set_title("Terms of each headline bound")
    ax.legend(fontsize=8)
    return save_figure(fig, out)
