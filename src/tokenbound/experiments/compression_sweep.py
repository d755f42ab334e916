"""`compression-sweep`: which compression gives the best token-level bound?

Six parameterizations of the same GPT, each trained for the same number of steps on the same batches (same
seed), compressed, and certified on the same sampled positions: dense + QAT, LoRA, Kronecker, Monarch, SubLoRA
(LoRA inside a random subspace) and Kronecker + subspace. Reported: bound, empirical bits, message length,
top-1/10/100 error bounds; and, as the prior-work baseline, the document-level bound of the SubLoRA model
(Lotfi et al. 2023: documents as IID samples). One plot: bound against message length.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.plots import plain_log_ticks, random_guess_line, save_figure
from .common import (Study, cert_numbers, certify, compress_run, finish, markdown_table, pyplot, text_store,
                     train_config, train_run)

DESCRIPTION = "dense+QAT, LoRA, Kronecker, Monarch, SubLoRA, Kronecker+subspace: bound vs message length"

# (name, layer spec, subspace dimension or None, compression method; {levels} and {qat_steps} filled per scale)
CONFIGS = [
    ("dense+QAT", "dense", None, "qat:levels={levels},steps={qat_steps}"),
    ("LoRA", "attn=lora:{rank},mlp=lora:{rank},head=lora:{rank}", None, "quant:levels={levels}"),
    ("Kronecker", "attn=kron,mlp=kron,head=kron", None, "quant:levels={levels}"),
    ("Monarch", "attn=monarch:4,mlp=monarch:4,head=monarch:4", None, "quant:levels={levels}"),
    ("SubLoRA", "attn=lora:{rank},mlp=lora:{rank},head=lora:{rank}", "{dim}", "quant:levels={levels}"),
    ("Kronecker+subspace", "attn=kron,mlp=kron,head=kron", "{dim}", "quant:levels={levels}"),
]
SUBLORA = "SubLoRA"

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
             "train": {"steps": 10, "batch_size": 8}, "rank": 2, "dim": 200, "levels": 11, "qat_steps": 5,
             "samples": 100, "doc_samples": 10},
    "small": {"preset": "demo", "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
              "train": {"steps": 300, "batch_size": 16}, "rank": 4, "dim": 5000, "levels": 11, "qat_steps": 40,
              "samples": 1000, "doc_samples": 20},
    "paper": {"preset": "gpt2-small", "model": {}, "train": {}, "rank": 4, "dim": 50000, "levels": 11,
              "qat_steps": 300, "samples": 10000, "doc_samples": 1000},
}


def configs_for(s: dict[str, Any]) -> list[tuple[str, str, int | None, str]]:
    out = []
    for name, layers, dim, method in CONFIGS:
        out.append((name, layers.format(rank=s["rank"]), None if dim is None else int(dim.format(dim=s["dim"])),
                    method.format(levels=s["levels"], qat_steps=s["qat_steps"])))
    return out


def slug(name: str) -> str:
    return name.lower().replace("+", "-")


def run(study: Study) -> dict[str, Any]:
    s = SETTINGS[study.scale]
    data = text_store(study)
    steps = s["train"].get("steps")
    config = train_config(s["preset"], s["model"], {**s["train"], **({"eval_interval": steps,
                                                                       "checkpoint_interval": max(1, steps // 2)}
                                                                      if steps else {})})
    rows, certs = [], []
    for name, layers, dim, method in configs_for(s):
        run_dir = train_run(study, slug(name), data, config, layers=layers, subspace=dim)
        comp = compress_run(study, slug(name), run_dir, method, data)
        doc = s["doc_samples"] if name == SUBLORA else 0
        cert = certify(study, slug(name), comp, data, samples=s["samples"], doc_samples=doc)
        certs.append(cert)
        c = cert_numbers(cert)
        rows.append({"name": name, "layers": layers, "subspace": dim, "method": method, **c})
    table = markdown_table(rows, [
        ("name", "model"), ("subspace", "subspace dim"), ("method", "compression"), ("message_bits", "message bits"),
        ("unsmoothed", "loss (unsmoothed)"), ("alpha", "α"), ("empirical", "empirical (smoothed)"),
        ("bound", "token-level bound"), ("top1", "top-1 err"), ("top10", "top-10 err"),
        ("top100", "top-100 err"), ("document_level", "doc-level bound (prior work)")])
    sub = next(r for r in rows if r["name"] == SUBLORA)
    plot = plot_bound_vs_message(rows, study.path("bound_vs_message.png"))
    notes = [f"Data: `{data}` (m = {rows[0]['num_tokens']:,} tokens). Every model: preset `{s['preset']}` with "
             f"{s['model'] or 'its own shape'}, training {s['train'] or 'as in the preset'}, the same batches "
             f"(seed {study.seed}); LoRA rank {s['rank']}, subspace dimension {s['dim']:,}; context "
             f"`{rows[0]['context']}`; {s['samples']:,} sampled positions per certificate (the same for all). "
             f"The document-level baseline of the SubLoRA model uses {s['doc_samples']} sampled documents of "
             f"the store's documents: {fmt_doc(sub['document_level'])} bits/token vs its token-level "
             f"{sub['bound']:.3f}. Random guess: {rows[0]['random_guess']:.3f} bits/token."]
    return finish(study, title="Compression sweep: which structure gives the best token-level bound?",
                  table=table, notes=notes, plots=[plot], settings=s, rows=rows, certificates=certs,
                  extra={"data": str(data)})


def fmt_doc(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def plot_bound_vs_message(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = "osD^vP"
    for i, r in enumerate(rows):  # a legend, not annotations: the subspace models sit on top of each other
        ax.scatter(r["message_bits"], r["bound"], s=40, marker=markers[i % len(markers)], label=r["name"])
    sub = next(r for r in rows if r["name"] == SUBLORA)
    if sub["document_level"] is not None:
        ax.scatter(sub["message_bits"], sub["document_level"], marker="x", color="k",
                   label="SubLoRA, document-level (prior work)")
    random_guess_line(ax, rows[0]["random_guess"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("message length (bits, log scale)")
    ax.set_ylabel("bound (bits per token, log scale)")
    ax.set_title("Token-level bound against message length")
    ax.legend(fontsize=7)
    return save_figure(fig, out)
