"""PNG plots over certificate rows (matplotlib, headless)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

# A bound above this many times the random-guess line is drawn at the top edge (an arrow with its value), so
# one far outlier does not squash the region near the line, where the interesting comparisons are.
CLIP_FACTOR = 1.6


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Lay out, write as PNG (120 dpi) and close `fig`; returns `out`."""
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def plain_log_ticks(axis) -> None:
    """Plain numbers (9, 20, 60; 10,000; 1e8 as 100,000,000 only where short) on a log axis, not 2×10¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def fmt(v, _pos=None) -> str:
        if v <= 0:
            return ""
        if v >= 1e6:
            return f"{v:.3g}".replace("e+0", "e").replace("e+", "e")
        return f"{v:,.0f}" if v >= 10 else f"{v:g}"

    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(fmt))


def random_guess_line(ax, value: float) -> None:
    """The random-guess line, labelled with its value on the plot and in the legend (call it after plotting the
    data: it raises the top of the y axis if the label would not fit, which freezes the y limits)."""
    ax.axhline(value, color="grey", ls="--", lw=1, label=f"random guess (log2 V = {value:.3f})")
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        if value > hi / 1.15:
            ax.set_ylim(lo, value * 1.15)  # room for the label above the line
    elif value > hi - 0.08 * (hi - lo):
        ax.set_ylim(lo, value + 0.08 * (hi - lo))
    ax.annotate(f"random guess {value:.2f}", (0.01, value), xycoords=("axes fraction", "data"), xytext=(0, 3),
                textcoords="offset points", ha="left", va="bottom", fontsize=7, color="grey")


def bound_vs_message_figure(rows: list[dict[str, Any]]):
    """The figure of `plot_bound_vs_message` (returned open, for inspection)."""
    plt = _pyplot()
    train = [r for r in rows if r["kind"] == "train" and r["message_bits"] > 0]
    fig, ax = plt.subplots(figsize=(7.2, 4.4 + 0.22 * len(train)))
    ax.set_xscale("log")
    guess = train[0]["random_guess"] if train else (rows[0]["random_guess"] if rows else None)
    top = None
    if train:
        lows = [min(r["bound"], r["empirical"]) for r in train]
        top = CLIP_FACTOR * guess
        if max(r["bound"] for r in train) < top:
            top = max(guess, max(r["bound"] for r in train)) * 1.08
        ax.set_ylim(max(0.0, min(lows) - 0.1 * guess), top)
        xs = [r["message_bits"] for r in train]
        ax.set_xlim(min(xs) / 2, max(xs) * 2)
    colors = plt.get_cmap("tab10")
    to_axes = ax.transAxes.inverted()
    taken = [tuple(to_axes.transform(ax.transData.transform((r["message_bits"], min(r["bound"], top)))))
             for r in train]  # every marker, then each number as it is placed (axes fractions)
    for i, r in enumerate(train, 1):
        c = colors((i - 1) % 10)
        clipped = r["bound"] > top
        y = top if clipped else r["bound"]
        label = f"{i}  {r['name']}: {r['bound']:.3f}" + ("  (above the plot)" if clipped else "")
        ax.scatter(r["message_bits"], y, s=46, color=c, marker="^" if clipped else "o", zorder=3, label=label,
                   clip_on=False)
        ax.scatter(r["message_bits"], r["empirical"], s=30, facecolors="none", edgecolors=c, zorder=3)
        dx, dy = _free_offset(ax, (r["message_bits"], y), taken, below=clipped)
        ax.annotate(str(i), (r["message_bits"], y), fontsize=8, xytext=(dx, dy), textcoords="offset points",
                    ha="center", va="center", color=c, fontweight="bold")
    if guess is not None:
        ax.axhline(guess, color="grey", ls="--", lw=1)
        ax.annotate(f"random guess: log2 V = {guess:.3f}", (0.99, guess), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8, color="grey")
    ref = next((r for r in train if r.get("gzip_bits_per_byte") and r.get("bits_per_byte")), None)
    if ref is not None:
        # real compressors on the same text, in this plot's bits per token (bytes/token = bound / bits per byte)
        bytes_per_token = ref["bound"] / ref["bits_per_byte"]
        for key, name, ls in (("gzip_bits_per_byte", "gzip -9", ":"), ("xz_bits_per_byte", "xz -9e", "-.")):
            y = ref[key] * bytes_per_token
            ax.axhline(y, color="tab:brown", ls=ls, lw=1)
            ax.annotate(f"{name} on the same text: {y:.3f} ({ref[key]:.3f} bits/byte)", (0.01, y),
                        xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", ha="left",
                        va="bottom", fontsize=7, color="tab:brown")
    ax.set_xlabel("message length (bits, log scale)")
    ax.set_ylabel("headline bound (bits per token)")
    ax.set_title("Token-level bound (filled) and empirical loss (hollow) against message length", fontsize=10)
    if train:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=8, ncol=1, frameon=False,
                  title="point  model: headline bound (bits/token)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training-set certificate with a message length", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="grey")
    return fig


def _free_offset(ax, xy, taken: list[tuple[float, float]], below: bool = False) -> tuple[int, int]:
    """An offset (points) for a point's number clear of `taken` (markers and numbers, in axes fractions).

    Tries offsets around the point, nearest first, and keeps the first one that is clear (else the clearest);
    the chosen label position is added to `taken`.
    """
    to_axes = ax.transAxes.inverted()
    px, py = ax.transData.transform(xy)
    scale = ax.figure.dpi / 72.0
    candidates = [(0, 9), (0, -10), (11, 0), (-11, 0), (10, 10), (-10, 10), (10, -10), (-10, -10), (0, 20),
                  (0, -21), (21, 0), (-21, 0), (0, 31), (0, -32)]
    if below:
        candidates = [(0, -10), (11, -10), (-11, -10), (0, -21), (21, -10), (-21, -10)]
    best, best_gap = candidates[0], -1.0
    for dx, dy in candidates:
        ax_x, ax_y = to_axes.transform((px + dx * scale, py + dy * scale))
        gap = min((max(abs(ax_x - a) / 0.022, abs(ax_y - b) / 0.035) for a, b in taken), default=9.0)
        if gap > best_gap:
            best, best_gap = (dx, dy), gap
        if gap >= 1.0:
            break
    taken.append(tuple(to_axes.transform((px + best[0] * scale, py + best[1] * scale))))
    return best


def plot_bound_vs_message(rows: list[dict[str, Any]], out: Path) -> Path:
    """Headline bound against message length (log x), random-guess line labelled, outliers clipped to the top
    edge, points numbered with a legend below (no overlapping labels)."""
    return save_figure(bound_vs_message_figure(rows), out)


def terms_figure(rows: list[dict[str, Any]]):
    """The figure of `plot_terms` (returned open, for inspection)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(rows) + 2), 4.6))
    names = ["\n".join(textwrap.wrap(f"{r['name']} ({r['kind']})", 18)) for r in rows]
    emp = [r["empirical"] for r in rows]
    comp = [r["complexity"] for r in rows]
    sub = [r["subsample"] for r in rows]
    x = list(range(len(rows)))
    ax.bar(x, emp, label="empirical loss")
    ax.bar(x, comp, bottom=emp, label="complexity (message length)")
    ax.bar(x, sub, bottom=[a + b for a, b in zip(emp, comp)], label="subsampling")
    if rows:
        guess = rows[0]["random_guess"]
        ax.axhline(guess, color="grey", ls="--", lw=1, label=f"random guess (log2 V = {guess:.3f})")
        top = min(max([guess, *(r["bound"] for r in rows)]), CLIP_FACTOR * guess) * 1.12
        ax.set_ylim(0, top)
        for i, r in enumerate(rows):  # each bar's total; a bar cut at the top edge says so
            clipped = r["bound"] > top
            ax.annotate(("↑ " if clipped else "") + f"{r['bound']:.2f}", (i, min(r["bound"], top)),
                        xytext=(0, -10 if clipped else 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7, fontweight="bold" if clipped else "normal")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=0, ha="center", fontsize=7)
    ax.set_ylabel("bits per token")
    ax.set_title("Terms of each headline bound: empirical + complexity + subsampling", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    return fig


def plot_terms(rows: list[dict[str, Any]], out: Path) -> Path:
    """Stacked bar per certificate: empirical + complexity + subsampling = headline bound."""
    return save_figure(terms_figure(rows), out)
