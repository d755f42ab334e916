"""`memorization`: does compression destroy memorized facts before it destroys learned structure?

A synthetic TokenStore mixes two kinds of documents of the same length:
- *structured*: arithmetic progressions (start a, step s: x_t = 1 + (a + s·t) mod (V − 1)), a fresh random
  (a, s) for every document — predictable from two tokens once the rule is learned;
- *random*: a fixed pool of uniformly random sequences, each repeated ``copies`` times — predictable only by
  memorizing them (incompressible: ~log2(V − 1) bits per token of information each).
A small GPT is trained until it reproduces both, then post-training quantized (``quant:levels=K``) at
decreasing level counts K. For every model we measure next-token accuracy (top-1, positions >= 2 of each
sequence) on the memorized random sequences and on fresh structured sequences drawn from the same rules, and
certify its token-level bound on the training store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..report.plots import random_guess_line, save_figure
from ..artifacts import read_json, write_json
from ..errors import TokenboundError
from .common import Study, cert_numbers, certify, compress_run, done, finish, markdown_table, pyplot, train_config, \
    train_run

DESCRIPTION = "structured vs memorized random sequences: accuracy of each against quantization levels"
EOT = 0
FIRST_SCORED = 2  # positions 0 and 1 of a sequence are unpredictable for both kinds (rule / sequence identity)

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"vocab": 32, "length": 16, "random_pool": 16, "copies": 8, "structured_docs": 128, "fresh_docs": 64,
             "max_step": 3, "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
             "train": {"steps": 30, "batch_size": 16}, "levels": [9, 3], "samples": 100},
    "small": {"vocab": 64, "length": 32, "random_pool": 32, "copies": 64, "structured_docs": 16000, "fresh_docs": 256,
              "max_step": 5, "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 66},
              "train": {"steps": 800, "batch_size": 32, "lr": 3e-3, "warmup_steps": 30},
              "levels": [129, 33, 17, 9, 7, 5, 3], "samples": 2000},
    "paper": {"vocab": 128, "length": 64, "random_pool": 1024, "copies": 32, "structured_docs": 32768,
              "fresh_docs": 2048, "max_step": 7, "model": {"n_layer": 6, "n_head": 8, "n_embd": 512, "block_size": 256},
              "train": {"steps": 20000, "batch_size": 32, "lr": 1e-3, "warmup_steps": 500},
              "levels": [257, 65, 33, 17, 9, 7, 5, 3], "samples": 10000},
}


def structured_sequences(rng: np.random.Generator, n: int, s: dict[str, Any]) -> np.ndarray:
    a = rng.integers(0, s["vocab"] - 1, size=(n, 1))
    step = rng.integers(1, s["max_step"] + 1, size=(n, 1))
    return 1 + (a + step * np.arange(s["length"])[None, :]) % (s["vocab"] - 1)


def build_dataset(path: Path, s: dict[str, Any], seed: int) -> dict[str, Any]:
    """Write the training store (shuffled mix) and the evaluation sequences (``eval.npz``) under `path`."""
    from ..data.store import write_store

    rng = np.random.default_rng([seed, 8])
    pool = rng.integers(1, s["vocab"], size=(s["random_pool"], s["length"]))
    structured = structured_sequences(rng, s["structured_docs"], s)
    docs = np.concatenate([np.repeat(pool, s["copies"], axis=0), structured])
    kind = np.concatenate([np.ones(len(pool) * s["copies"], bool), np.zeros(len(structured), bool)])
    order = rng.permutation(len(docs))
    docs, kind = docs[order], kind[order]
    fresh = structured_sequences(rng, s["fresh_docs"], s)
    tokens = np.concatenate([docs, np.full((len(docs), 1), EOT)], axis=1).ravel()
    offsets = np.arange(len(docs), dtype=np.int64) * (s["length"] + 1)
    store = path / "store"
    write_store(store, tokens, offsets, vocab_size=s["vocab"], eot=EOT)
    np.savez(path / "eval.npz", random=pool, structured_fresh=fresh, structured_train=structured)
    info = {"documents": int(len(docs)), "random_documents": int(kind.sum()), "tokens": int(tokens.size),
            "seed_rule": "numpy default_rng([seed, 8]): pool, then structured, then shuffle, then fresh"}
    write_json(path / "dataset.json", info)
    return info


def accuracy(model, seqs: np.ndarray) -> float:
    """Top-1 next-token accuracy over positions >= FIRST_SCORED of each sequence (each row preceded by eot)."""
    import torch

    x = torch.from_numpy(np.concatenate([np.full((len(seqs), 1), EOT), seqs], axis=1)).long()
    correct = total = 0
    for i in range(0, len(x), 256):
        lp = model.log_probs(x[i:i + 256, :-1])
        # argmax returns the first maximal index: ties go to the lowest id, the certified rule (docs/theory.md §8)
        pred = lp.argmax(-1)[:, FIRST_SCORED:]
        correct += int((pred == x[i:i + 256, 1 + FIRST_SCORED:]).sum())
        total += pred.numel()
    return correct / total


def run(study: Study) -> dict[str, Any]:
    from ..models.loading import load

    s = SETTINGS[study.scale]
    if study.data is not None:
        raise TokenboundError("the memorization study builds its own synthetic store; omit --data", param="data")
    ds_dir = study.path("data")
    if not done(ds_dir / "store"):
        build_dataset(ds_dir, s, study.seed)
    data = ds_dir / "store"
    ev = np.load(ds_dir / "eval.npz", allow_pickle=False)
    steps = s["train"]["steps"]
    config = train_config("tiny", s["model"], {**s["train"], "eval_interval": steps, "weight_decay": 0.0,
                                               "checkpoint_interval": max(1, steps // 4)})
    run_dir = train_run(study, "gpt", data, config)
    models: list[tuple[str, int | None, Path]] = [("float32 (archive)", None, run_dir)]
    for k in s["levels"]:
        models.append((f"quant:levels={k}", k, compress_run(study, f"levels-{k}", run_dir, f"quant:levels={k}")))
    rows, certs = [], []
    for label, k, path in models:
        cert = certify(study, "float" if k is None else f"levels-{k}", path, data, samples=s["samples"])
        certs.append(cert)
        acc_file = study.path("accuracy", f"{'float' if k is None else f'levels-{k}'}.json")
        if not acc_file.exists():
            model = load(path, device=study.device)
            write_json(acc_file, {"random_memorized": accuracy(model, ev["random"]),
                                  "structured_fresh": accuracy(model, ev["structured_fresh"]),
                                  "structured_train": accuracy(model, ev["structured_train"])})
        acc = read_json(acc_file)
        rows.append({"model": label, "levels": k, **acc, **cert_numbers(cert)})
    table = markdown_table(rows, [
        ("model", "model"), ("random_memorized", "acc. random (memorized)"),
        ("structured_fresh", "acc. structured (fresh)"), ("structured_train", "acc. structured (train)"),
        ("message_bits", "message bits"), ("empirical", "empirical"), ("bound", "bound"), ("top1", "top-1 err bound")])
    plot = plot_accuracy(rows, study.path("accuracy_vs_levels.png"))
    info = read_json(ds_dir / "dataset.json")
    chance = 1.0 / (s["vocab"] - 1)
    notes = [f"Data: {info['documents']:,} documents of {s['length']} tokens (+eot), V = {s['vocab']}: "
             f"{s['random_pool']} random sequences x {s['copies']} copies and {s['structured_docs']:,} arithmetic "
             f"progressions (steps 1–{s['max_step']}); m = {info['tokens']:,} tokens. Accuracy: top-1 over positions "
             f">= {FIRST_SCORED} of each sequence (chance {chance:.3f}); structured (fresh) are {s['fresh_docs']} "
             f"new progressions never trained on. GPT {s['model']}, {steps} steps. Bounds: {s['samples']:,} "
             f"sampled positions of the training store; the float32 row is charged its lossless archive."]
    return finish(study, title="Memorization vs structure under quantization", table=table, notes=notes,
                  plots=[plot], settings=s, rows=rows, certificates=certs, extra={"dataset": info})


def plot_accuracy(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    q = [r for r in rows if r["levels"] is not None]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.0))
    ks = [r["levels"] for r in q]
    ax.plot(ks, [r["random_memorized"] for r in q], "o-", label="random (memorized)")
    ax.plot(ks, [r["structured_fresh"] for r in q], "s-", label="structured (fresh)")
    ax.plot(ks, [r["structured_train"] for r in q], "^:", label="structured (train)")
    fl = rows[0]
    ax.axhline(fl["random_memorized"], color="C0", ls="--", lw=0.8, alpha=0.6)
    ax.axhline(fl["structured_fresh"], color="C1", ls="--", lw=0.8, alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.invert_xaxis()
    ax.set_xlabel("quantization levels K (fewer = stronger compression)")
    ax.set_ylabel("next-token accuracy")
    ax.set_title("Accuracy (dashed: unquantized)")
    ax.legend(fontsize=8)
    bx.plot(ks, [r["bound"] for r in q], "o-", label="bound")
    bx.plot(ks, [r["empirical"] for r in q], "s:", label="empirical")
    random_guess_line(bx, fl["random_guess"])
    bx.set_xscale("log", base=2)
    bx.invert_xaxis()
    for axis in (ax, bx):  # label the level counts actually used
        axis.set_xticks(ks, [str(k) for k in ks])
        axis.minorticks_off()
    bx.set_xlabel("quantization levels K")
    bx.set_ylabel("bits per token")
    bx.set_title("Token-level bound of each model")
    bx.legend(fontsize=8)
    return save_figure(fig, out)
