"""`scaling`: the token-level bound against model size.

GPTs of 3–4 widths (same depth, same data, same number of steps and batches, same seed), each quantized with the
same fixed quantizer (``quant:levels=L``: a fixed level count, so a fixed rate before entropy coding) and
certified on the same sampled positions. Plot: bound, empirical loss and message length against the number of
coded parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.plots import random_guess_line, save_figure
from .common import (Study, cert_numbers, certify, compress_run, finish, markdown_table, pyplot, text_store,
                     train_config, train_run)

DESCRIPTION = "GPT widths trained for a fixed budget, quantized at a fixed rate: bound vs size"

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "widths": [16, 32], "model": {"n_layer": 1, "n_head": 2, "block_size": 32},
             "train": {"steps": 10, "batch_size": 8}, "levels": 7, "samples": 100},
    "small": {"preset": "demo", "widths": [32, 64, 96, 128], "model": {"n_layer": 2, "n_head": 2, "block_size": 64},
              "train": {"steps": 600, "batch_size": 16}, "levels": 7, "samples": 1000},
    "paper": {"preset": "gpt2-small", "widths": [192, 384, 576, 768], "model": {"n_head": 12}, "train": {},
              "levels": 7, "samples": 10000},
}


def run(study: Study) -> dict[str, Any]:
    s = SETTINGS[study.scale]
    data = text_store(study)
    steps = s["train"].get("steps")
    tr = {**s["train"], **({"eval_interval": steps, "checkpoint_interval": max(1, steps // 2)} if steps else {})}
    method = f"quant:levels={s['levels']}"
    rows, certs = [], []
    for width in s["widths"]:
        name = f"width-{width}"
        run_dir = train_run(study, name, data, train_config(s["preset"], {**s["model"], "n_embd": width}, tr))
        comp = compress_run(study, name, run_dir, method, data)
        cert = certify(study, name, comp, data, samples=s["samples"])
        certs.append(cert)
        c = cert_numbers(cert)
        from ..artifacts import read_manifest

        man = read_manifest(comp)
        rows.append({"width": width, "coded_params": man.get("num_coded_params"),
                     "bits_per_param": man.get("bits_per_coded_param"), **c})
    table = markdown_table(rows, [
        ("width", "n_embd"), ("coded_params", "coded params"), ("bits_per_param", "bits/param"),
        ("message_bits", "message bits"), ("unsmoothed", "loss (unsmoothed)"), ("alpha", "α"),
        ("empirical", "empirical (smoothed)"), ("complexity", "complexity"),
        ("bound", "bound"), ("top1", "top-1 err"), ("top100", "top-100 err")])
    plot = plot_scaling(rows, study.path("bound_vs_size.png"))
    notes = [f"Data: `{data}` (m = {rows[0]['num_tokens']:,} tokens). Preset `{s['preset']}` with {s['model']}, "
             f"training {s['train'] or 'as in the preset'} for every width; compression `{method}`; context "
             f"`{rows[0]['context']}`; {s['samples']:,} sampled positions per certificate (the same positions for "
             f"every model). Random guess: {rows[0]['random_guess']:.3f} bits/token."]
    return finish(study, title="Bound against model size", table=table, notes=notes, plots=[plot], settings=s,
                  rows=rows, certificates=certs, extra={"data": str(data)})


def plot_scaling(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    n = [r["coded_params"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(n, [r["bound"] for r in rows], "o-", label="bound")
    ax.plot(n, [r["empirical"] for r in rows], "s-", label="empirical (smoothed)")
    ax.plot(n, [r["unsmoothed"] for r in rows], "v:", label="loss (unsmoothed)")
    random_guess_line(ax, rows[0]["random_guess"])
    ax.set_xscale("log")
    ax.set_xlabel("coded parameters (log scale)")
    ax.set_ylabel("bits per token")
    bx = ax.twinx()
    bx.plot(n, [r["message_bits"] for r in rows], "^--", color="C3", label="message length (right axis)")
    bx.set_yscale("log")
    bx.set_ylabel("message length (bits, log scale)")
    lines = ax.get_legend_handles_labels()
    more = bx.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=3, frameon=False)  # below the axes: never over a curve
    ax.set_title("Bound, empirical loss and message length against size")
    return save_figure(fig, out)
