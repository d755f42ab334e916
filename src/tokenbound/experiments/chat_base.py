"""`chat-vs-base`: does turning a base model into a chat model change its token-level bound on pretraining data?

1. Pretrain a base GPT on the pretraining store (``code_data.code_store``).
2. Build a dialogue corpus offline from standard-library source (``dialogue.py``: each documented function or
   class becomes "User: Explain this Python function. <code> Assistant: <docstring>"), tokenized like the
   pretraining store, with a recorded recipe and a held-out ``val/`` part.
3. Fine-tune the base on it two ways (``train --init-from``): full fine-tuning (every weight) and LoRA
   (adapters on attention and MLP; embeddings and norms also trained), the LoRA model written merged.
4. Quantize the three models with the same quantizer and certify them on the PRETRAINING store under the same
   context rule, sampler and seed (the same sampled positions). Each model is coded as a full model of the
   base's shape (not as base + delta), as the seed paper compares the chat model alone.
5. Evaluate each (quantized) model on the held-out dialogues and on the pretraining store's held-out split
   (plain evaluations, not certificates) to show that the fine-tune worked and what it cost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import read_json, read_manifest
from ..report.plots import random_guess_line, save_figure
from .code_data import TINY_GLOB, code_store, stdlib_files, store_ready
from .common import (Study, cert_numbers, certify, compress_run, evaluation, finish, markdown_table, pyplot,
                     train_config, train_run)

DESCRIPTION = "a base GPT and its chat fine-tunes (full, LoRA): bounds on the pretraining data, dialogue loss"

# (row label, run name, layer spec of the fine-tune or None for the base; {rank} filled per scale)
MODELS = [("base", "base", None), ("chat: full fine-tune", "chat-full", "dense"),
          ("chat: LoRA fine-tune (merged)", "chat-lora", "attn=lora:{rank},mlp=lora:{rank}")]

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
             "train": {"steps": 10, "batch_size": 8},
             "finetune": {"steps": 6, "batch_size": 8, "lr": 3e-3, "warmup_steps": 1},
             "lora_lr": 1e-2, "rank": 2, "levels": 11, "samples": 100, "eval_tokens": 512,
             "dialogue": {"glob": TINY_GLOB, "max_chars": 800, "max_exchanges": 60, "val_exchanges": 10}},
    "small": {"preset": "demo", "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
              "train": {"steps": 600, "batch_size": 16},
              "finetune": {"steps": 200, "batch_size": 16, "lr": 1e-3, "warmup_steps": 10},
              "lora_lr": 3e-3, "rank": 8, "levels": 11, "samples": 1000, "eval_tokens": 20000,
              "dialogue": {"glob": "**/*.py", "max_chars": 1500, "max_exchanges": 3000, "val_exchanges": 300}},
    "paper": {"preset": "gpt2-small", "model": {}, "train": {},
              "finetune": {"steps": 2000, "batch_size": 12, "grad_accum": 5, "lr": 6e-5, "warmup_steps": 100},
              "lora_lr": 3e-4, "rank": 16, "levels": 11, "samples": 10000, "eval_tokens": 200000,
              "dialogue": {"glob": "**/*.py", "max_chars": 4000, "max_exchanges": 20000, "val_exchanges": 1000}},
}


def finetune_config(s: dict[str, Any], lora: bool) -> dict[str, Any]:
    steps = s["finetune"]["steps"]
    return {**s["finetune"], **({"lr": s["lora_lr"]} if lora else {}), "eval_interval": steps,
            "checkpoint_interval": max(1, steps // 2), "weight_decay": 0.0}


def finetune_run(study: Study, name: str, data: Path, base: Path, train: dict[str, Any], layers: str) -> Path:
    """Fine-tune (or resume, or skip) OUT/runs/NAME from the Run `base` on `data` (train --init-from)."""
    config = {"model": read_json(base / "config.json")["model"], "train": train}
    return train_run(study, name, data, config, layers=layers, init_from=base, label=f"fine-tune {name} ({layers})")


def run(study: Study) -> dict[str, Any]:
    from ..data.store import TokenStore
    from .dialogue import build_dialogue_stores

    s = SETTINGS[study.scale]
    pre = code_store(study)
    pre_store = TokenStore.open(pre)
    chat = study.path("dialogue", "store")
    d = s["dialogue"]
    recipe_file = study.path("dialogue", "recipe.json")  # written last: its presence means both stores are done
    study.stage("dialogue corpus", recipe_file, lambda: build_dialogue_stores(
        chat, stdlib_files(d["glob"]), pre_store, seed=study.seed, max_chars=d["max_chars"],
        max_exchanges=d["max_exchanges"], val_exchanges=d["val_exchanges"]))
    recipe = read_json(recipe_file)
    steps = s["train"].get("steps")
    base_cfg = train_config(s["preset"], s["model"], {**s["train"], **({"eval_interval": steps,
                                                                        "checkpoint_interval": max(1, steps // 2)}
                                                                       if steps else {})})
    base = train_run(study, "base", pre, base_cfg)
    method = f"quant:levels={s['levels']}"
    rows, certs = [], []
    for label, name, layers in MODELS:
        if layers is None:
            run_dir = base
        else:
            layers = layers.format(rank=s["rank"])
            run_dir = finetune_run(study, name, chat, base, finetune_config(s, layers != "dense"), layers)
        comp = compress_run(study, name, run_dir, method, pre)
        cert = certify(study, name, comp, pre, samples=s["samples"])
        certs.append(cert)
        man = read_manifest(run_dir)
        rows.append({"model": label, "name": name, "finetune_layers": layers,
                     "trained_params": man.get("trainable_params"), "coded_params": man.get("coded_params"),
                     "dialogue_bits": evaluation(study, f"{name}-dialogue", comp, chat / "val", s["eval_tokens"]),
                     "pretraining_heldout_bits": evaluation(study, f"{name}-pretraining", comp, pre / "val",
                                                            s["eval_tokens"]) if store_ready(pre) else None,
                     **cert_numbers(cert)})
    table = markdown_table(rows, [
        ("model", "model"), ("trained_params", "trained params"), ("message_bits", "message bits"),
        ("unsmoothed", "loss on pretraining sample (unsmoothed)"), ("empirical", "empirical (smoothed)"),
        ("bound", "bound (pretraining data)"), ("dialogue_bits", "held-out dialogue bits/token"),
        ("pretraining_heldout_bits", "held-out pretraining bits/token")])
    plot = plot_chat_vs_base(rows, study.path("chat_vs_base.png"))
    notes = notes_for(study, s, rows, pre, recipe, method)
    return finish(study, title="Chat vs base: token-level bounds on the pretraining data", table=table, notes=notes,
                  plots=[plot], settings=s, rows=rows, certificates=certs,
                  extra={"data": str(pre), "dialogue": str(chat), "dialogue_recipe": recipe})


def notes_for(study: Study, s: dict[str, Any], rows: list[dict[str, Any]], pre: Path, recipe: dict[str, Any],
              method: str) -> list[str]:
    r0 = rows[0]
    return [
        f"Pretraining data: `{pre}` (m = {r0['num_tokens']:,} tokens). Base: preset `{s['preset']}` with "
        f"{s['model'] or 'its own shape'}, training {s['train'] or 'as in the preset'}. Dialogue corpus: "
        f"{recipe['exchanges_kept']:,} of {recipe['exchanges_found']:,} exchanges from "
        f"{len(recipe['source_files']):,} standard-library files (`{s['dialogue']['glob']}`, at most "
        f"{recipe['max_chars']:,} characters each), {recipe['val_exchanges']:,} held out; recipe with file sha256s in "
        f"`dialogue/recipe.json`. Fine-tuning: {s['finetune']} from the base (`train --init-from`), LoRA rank "
        f"{s['rank']} on attention and MLP at lr {s['lora_lr']} (its embeddings and norms are trained too), "
        f"written merged.",
        f"Coding: every model, base and chat, is a full dense model of the same shape coded with `{method}` (not "
        f"base + delta: the seed paper compares the chat model alone). Coding a LoRA chat model as base + adapter "
        f"would need the adapter to be trained on top of the *quantized* base (the decoder only has that).",
        f"Certificates: all {len(rows)} on the pretraining store, context `{r0['context']}`, {s['samples']:,} "
        f"sampled positions, seed {study.seed} — the same positions for every model (paired). Each bound holds on "
        f"its own at 95 %; quoting only the best of the {len(rows)} would cost log2 {len(rows)} more bits "
        f"(--extra-bits). "
        f"Held-out columns: mean bits/token on {s['eval_tokens']:,} tokens of fixed windows of the dialogue "
        f"`val/` part and of the pretraining store's `val/` split — evaluations, not certificates. Random guess: "
        f"{r0['random_guess']:.3f} bits/token.",
        "SmolLM2-135M-Instruct (the chat model `pretrained-ptq` certifies) has no base checkpoint on this machine, "
        "so the real base-vs-chat pair is not measured here; `--scale paper` and docs/experiments.md give the "
        "recipe for a pretrained Hugging Face base model and its chat version on a GPU."]


def plot_chat_vs_base(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = [("bound", "bound (pretraining data)"), ("empirical", "empirical (smoothed)"),
              ("dialogue_bits", "held-out dialogue bits/token")]
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        xs = [i + (j - 1) * width for i in range(len(rows))]
        ax.bar(xs, [r[key] for r in rows], width=width, label=label)
    random_guess_line(ax, rows[0]["random_guess"])
    ax.set_xticks(range(len(rows)), [r["model"].replace(" (merged)", "") for r in rows], fontsize=8)
    ax.set_ylabel("bits per token")
    ax.set_title("Base vs chat models")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return save_figure(fig, out)
