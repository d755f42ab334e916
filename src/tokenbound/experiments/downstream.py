"""`downstream`: do models with better token-level bounds also do better on a downstream task?

Models of different quality, all certified on the same pretraining store with the same seed (the same sampled
positions): GPTs trained for different step counts and widths, each quantized with the same quantizer; one of
them quantized much harder; and Markov chains of order 0–3 (``models.markov``). The task (``next_line.py``):
for held-out Python functions (the store's ``val/`` split, never trained on), choose the true next line among
candidates by model likelihood. Reported: each model's bound and accuracy, the Spearman rank correlation between
bound and accuracy with a seeded bootstrap confidence interval (questions resampled), and a scatter plot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import read_json, write_json
from ..report.plots import save_figure
from .code_data import code_store
from .common import Study, cert_numbers, certify, compress_run, finish, markdown_table, pyplot, train_config, \
    train_run

DESCRIPTION = "GPTs of several budgets/widths, a hard-quantized GPT, Markov chains 0–3: bound vs next-line accuracy"

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "model": {"n_layer": 1, "n_head": 2, "block_size": 64},
             "gpts": [(16, 5), (32, 20)], "batch_size": 8, "levels": 11, "hard_levels": 3,
             "markov_orders": [0, 1, 2, 3], "samples": 100, "questions": 40, "choices": 4,
             "max_line_tokens": 32, "bootstrap": 200},
    "small": {"preset": "demo", "model": {"n_layer": 2, "n_head": 2, "block_size": 64},
              "gpts": [(64, 100), (64, 600), (128, 600)], "batch_size": 16, "levels": 11, "hard_levels": 3,
              "markov_orders": [0, 1, 2, 3], "samples": 1000, "questions": 400, "choices": 4,
              "max_line_tokens": 24, "bootstrap": 2000},
    "paper": {"preset": "gpt2-small", "model": {}, "gpts": [(384, 5000), (768, 5000), (768, 20000)],
              "batch_size": 12, "levels": 11, "hard_levels": 3, "markov_orders": [0, 1, 2, 3], "samples": 10000,
              "questions": 2000, "choices": 4, "max_line_tokens": 48, "bootstrap": 2000},
}


def models_for(study: Study, s: dict[str, Any], data: Path) -> list[dict[str, Any]]:
    """Build (resumably) every model of the study: {"name", "family", "label", "path"}."""
    from ..models.markov_fit import fit_store

    out = []
    last = None
    for width, steps in s["gpts"]:
        name = f"gpt-w{width}-s{steps}"
        cfg = train_config(s["preset"], {**s["model"], "n_embd": width},
                           {"steps": steps, "batch_size": s["batch_size"], "eval_interval": steps,
                            "checkpoint_interval": max(1, steps // 2), "warmup_steps": max(1, steps // 20)})
        last = train_run(study, name, data, cfg)
        out.append({"name": name, "family": "GPT", "label": f"GPT n_embd {width}, {steps} steps, "
                    f"quant:levels={s['levels']}",
                    "path": compress_run(study, name, last, f"quant:levels={s['levels']}", data)})
    width, steps = s["gpts"][-1]
    hard = f"gpt-w{width}-s{steps}-levels{s['hard_levels']}"
    out.append({"name": hard, "family": "GPT (hard quantization)",
                "label": f"GPT n_embd {width}, {steps} steps, quant:levels={s['hard_levels']}",
                "path": compress_run(study, hard, last, f"quant:levels={s['hard_levels']}", data)})
    for k in s["markov_orders"]:
        mdir = study.path("markov", f"order-{k}")
        study.stage(f"markov order {k}", mdir, lambda k=k, mdir=mdir: fit_store(data, k, mdir))
        out.append({"name": f"markov-k{k}", "family": "Markov", "label": f"Markov chain, order {k}", "path": mdir})
    return out


def task(study: Study, s: dict[str, Any], data: Path):
    """The questions (built once into OUT/downstream/questions.json)."""
    from ..data.store import TokenStore
    from .next_line import RULE, Question, questions

    store = TokenStore.open(data)
    path = study.path("downstream", "questions.json")
    if not path.exists():
        qs = questions(store, store.tokenizer, num=s["questions"], choices=s["choices"],
                       max_line_tokens=s["max_line_tokens"], seed=study.seed)
        write_json(path, {"seed": study.seed, "rule": RULE, "store": str(data), "store_sha256": store.sha256,
                          "questions": [q.to_dict() for q in qs]})
    return store, [Question.from_dict(d) for d in read_json(path)["questions"]]


def correct_of(study: Study, model: dict[str, Any], store, qs) -> list[int]:
    from ..models.loading import load
    from .next_line import score

    path = study.path("downstream", f"{model['name']}.json")
    if not path.exists():
        import time

        t = time.time()
        correct = score(load(model["path"], device=study.device), store.tokenizer, store.eot, qs)
        study.timings[f"downstream {model['name']}"] = round(time.time() - t, 1)
        write_json(path, {"model": str(model["path"]), "correct": correct, "accuracy": float(np.mean(correct))})
    return [int(c) for c in read_json(path)["correct"]]


def spearman_with_ci(bounds: list[float], correct: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """Spearman ρ between bound and accuracy (models), and a percentile 95 % interval from resampling the
    questions (numpy ``default_rng([seed, 13])``); resamples where accuracies are all tied are dropped."""
    from scipy.stats import spearmanr

    acc = correct.mean(axis=1)
    rho = float(spearmanr(bounds, acc).statistic)
    rng = np.random.default_rng([seed, 13])
    n = correct.shape[1]
    draws = []
    for _ in range(resamples):
        a = correct[:, rng.integers(0, n, n)].mean(axis=1)
        if np.ptp(a) > 0:
            draws.append(float(spearmanr(bounds, a).statistic))
    lo, hi = (np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan")))
    return {"rho": rho, "ci95": [float(lo), float(hi)], "resamples": resamples, "resamples_used": len(draws),
            "rule": "percentile bootstrap over questions, default_rng([seed, 13])"}


def run(study: Study) -> dict[str, Any]:
    s = SETTINGS[study.scale]
    data = code_store(study)
    models = models_for(study, s, data)
    store, qs = task(study, s, data)
    rows, certs, correct = [], [], []
    for m in models:
        cert = certify(study, m["name"], m["path"], data, samples=s["samples"])
        certs.append(cert)
        c = correct_of(study, m, store, qs)
        correct.append(c)
        rows.append({"model": m["label"], "name": m["name"], "family": m["family"], "accuracy": float(np.mean(c)),
                     **cert_numbers(cert)})
    corr = spearman_with_ci([r["bound"] for r in rows], np.array(correct, dtype=float), s["bootstrap"], study.seed)
    loss_corr = spearman_with_ci([r["unsmoothed"] for r in rows], np.array(correct, dtype=float), s["bootstrap"],
                                 study.seed)
    table = markdown_table(rows, [
        ("model", "model"), ("message_bits", "message bits"), ("unsmoothed", "loss (unsmoothed)"),
        ("empirical", "empirical (smoothed)"), ("bound", "bound"), ("context", "context"),
        ("accuracy", "next-line accuracy")])
    plot = plot_accuracy_vs_bound(rows, corr, 1.0 / s["choices"], study.path("accuracy_vs_bound.png"))
    notes = [f"Data: `{data}` (m = {rows[0]['num_tokens']:,} tokens). Certificates: {s['samples']:,} sampled "
             f"positions, seed {study.seed}, the same positions for every model, each model under its own context "
             f"rule. GPTs: preset `{s['preset']}` with {s['model'] or 'its own shape'}, batch {s['batch_size']}; "
             f"Markov chains: Witten–Bell smoothing, entropy-coded counts. Random guess: "
             f"{rows[0]['random_guess']:.3f} bits/token.",
             f"Task: {len(qs)} questions from held-out functions (the store's `val/` split, never trained on), "
             f"{s['choices']} candidate lines each (chance {1 / s['choices']:.2f}); questions in "
             f"`downstream/questions.json`, each model's answers in `downstream/NAME.json`.",
             f"Spearman ρ(bound, accuracy) = {corr['rho']:.3f}, 95 % bootstrap interval "
             f"[{corr['ci95'][0]:.3f}, {corr['ci95'][1]:.3f}] ({corr['resamples_used']} of {corr['resamples']} "
             f"resamples of the questions; the models and their bounds are fixed). A negative ρ means lower bounds go "
             f"with higher accuracy. For comparison ρ(unsmoothed loss, accuracy) = {loss_corr['rho']:.3f} "
             f"[{loss_corr['ci95'][0]:.3f}, {loss_corr['ci95'][1]:.3f}]."]
    return finish(study, title="Bound vs downstream accuracy", table=table, notes=notes, plots=[plot], settings=s,
                  rows=rows, certificates=certs,
                  extra={"data": str(data), "spearman": corr, "spearman_loss": loss_corr, "questions": len(qs)})


def plot_accuracy_vs_bound(rows: list[dict[str, Any]], corr: dict[str, Any], chance: float, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = {"GPT": "o", "GPT (hard quantization)": "X", "Markov": "s"}
    for i, r in enumerate(rows):
        ax.scatter(r["bound"], r["accuracy"], marker=markers.get(r["family"], "o"), s=45, color=f"C{i}",
                   label=r["model"])
    ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.2f})")
    guess = rows[0]["random_guess"]  # every model shares the store's vocabulary
    ax.axvline(guess, color="grey", ls=":", lw=1, label=f"random guess ({guess:.2f} bits; right of it: vacuous)")
    ax.set_xlabel("token-level bound (bits per token)")
    ax.set_ylabel("next-line accuracy (held-out functions)")
    ax.set_title(f"Spearman ρ = {corr['rho']:.2f}, 95 % CI [{corr['ci95'][0]:.2f}, {corr['ci95'][1]:.2f}]")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return save_figure(fig, out)
