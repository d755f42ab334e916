"""`markov-vs-context`: do transformers capture longer-range structure than k-th order Markov chains?

For each k, on the same TokenStore and under the same context rule ``doc:k``:
- a k-th order Markov chain (``models.markov_fit.fit_store``, Witten–Bell smoothing fixed in advance; its message is
  its entropy-coded count table), certified as is;
- a GPT whose block size is k (it is trained with at most k tokens of context and evaluated with exactly the
  ``doc:k`` rule), quantized (``quant:levels=L``) and certified.
Both certificates of one k use the same sampled positions (same seed). One table and one plot against k.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.plots import plain_log_ticks, random_guess_line, save_figure
from .common import Study, cert_numbers, certify, compress_run, finish, markdown_table, pyplot, text_store, train_run

DESCRIPTION = "k-th order Markov chains vs GPTs restricted to k tokens of context: both bounds against k"

# Settings per scale. tokens_per_step is held fixed across k (batch = tokens_per_step / k windows) so every
# GPT sees the same number of training tokens whatever its context.
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"orders": [1, 3], "preset": "tiny", "model": {"n_layer": 1, "n_head": 2, "n_embd": 16},
             "steps": 10, "tokens_per_step": 128, "lr": 3e-3, "levels": 11, "samples": 100},
    "small": {"orders": [1, 2, 3, 4, 5, 6, 7, 8], "preset": "demo",
              "model": {"n_layer": 2, "n_head": 2, "n_embd": 64}, "steps": 200, "tokens_per_step": 2048,
              "lr": 3e-3, "levels": 11, "samples": 2000},
    "paper": {"orders": [1, 2, 3, 4, 5, 6, 7, 8], "preset": "gpt2-small", "model": {}, "steps": 20000,
              "tokens_per_step": 61440, "lr": 6e-4, "levels": 11, "samples": 10000},
}


def gpt_config(s: dict[str, Any], k: int) -> dict[str, dict[str, Any]]:
    from .common import train_config

    batch = max(1, s["tokens_per_step"] // k)
    return train_config(s["preset"], {**s["model"], "block_size": k},
                        {"steps": s["steps"], "batch_size": batch, "grad_accum": 1, "lr": s["lr"],
                         "warmup_steps": max(1, s["steps"] // 20), "eval_interval": s["steps"],
                         "checkpoint_interval": max(1, s["steps"] // 2)})


def markov_supported(store_path: Path, order: int) -> bool:
    """Whether the Markov model can represent this order for the store's vocabulary (its context keys are
    62-bit integers: (V + 1)^k < 2^62, e.g. k <= 4 for V = 8192)."""
    from ..data.store import TokenStore
    from ..errors import TokenboundError
    from ..models.markov_table import check_shape

    store = TokenStore.open(store_path)
    try:
        check_shape(store.vocab_size, store.eot, order)
    except TokenboundError:
        return False
    return True


def run(study: Study) -> dict[str, Any]:
    from ..models.markov_fit import fit_store

    s = SETTINGS[study.scale]
    data = text_store(study)
    rows, certs = [], []
    for k in s["orders"]:
        rule = f"doc:{k}"
        m = None
        if markov_supported(data, k):
            mdir = study.path("markov", f"order-{k}")
            study.stage(f"markov order {k}", mdir, lambda: fit_store(data, k, mdir))
            mcert = certify(study, f"markov-k{k}", mdir, data, samples=s["samples"], context=rule)
            certs.append(mcert)
            m = cert_numbers(mcert)
        run_dir = train_run(study, f"gpt-k{k}", data, gpt_config(s, k))
        comp = compress_run(study, f"gpt-k{k}", run_dir, f"quant:levels={s['levels']}", data)
        gcert = certify(study, f"gpt-k{k}", comp, data, samples=s["samples"], context=rule)
        certs.append(gcert)
        g = cert_numbers(gcert)
        rows.append({"k": k, "context": rule, "markov_bound": m and m["bound"],
                     "markov_empirical": m and m["empirical"], "markov_message_bits": m and m["message_bits"],
                     "gpt_bound": g["bound"], "gpt_empirical": g["empirical"], "gpt_message_bits": g["message_bits"],
                     "markov_unsmoothed": m and m["unsmoothed"], "gpt_unsmoothed": g["unsmoothed"],
                     "random_guess": g["random_guess"], "num_tokens": g["num_tokens"],
                     "better": None if m is None else "GPT" if g["bound"] < m["bound"] else "Markov",
                     "markov": m, "gpt": g})
    table = markdown_table(rows, [
        ("k", "k"), ("markov_unsmoothed", "Markov loss"), ("markov_empirical", "Markov empirical (smoothed)"),
        ("markov_message_bits", "Markov message bits"), ("markov_bound", "Markov bound"),
        ("gpt_unsmoothed", "GPT loss"), ("gpt_empirical", "GPT empirical (smoothed)"),
        ("gpt_message_bits", "GPT message bits"), ("gpt_bound", "GPT bound"), ("better", "tighter bound")])
    plot = plot_against_k(rows, study.path("bound_vs_k.png"))
    notes = [f"Data: `{data}` (m = {rows[0]['num_tokens']:,} tokens), context rule `doc:k` for both models, "
             f"{s['samples']:,} sampled positions per certificate (the same positions for both models of a k). "
             f"GPT: preset `{s['preset']}` with {s['model'] or 'its own shape'}, block size k, {s['steps']} steps of "
             f"{s['tokens_per_step']:,} tokens, then `quant:levels={s['levels']}`. Markov: Witten–Bell smoothing, "
             f"entropy-coded counts; '–' where the order is beyond what the Markov model can index for this "
             f"vocabulary ((V+1)^k < 2^62). Random guess: {rows[0]['random_guess']:.3f} bits/token."]
    return finish(study, title="Markov chains vs GPTs with k tokens of context", table=table, notes=notes,
                  plots=[plot], settings=s, rows=rows, certificates=certs, extra={"data": str(data)})


def plot_against_k(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    ks = [r["k"] for r in rows]
    mk = [r for r in rows if r["markov_bound"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([r["k"] for r in mk], [r["markov_bound"] for r in mk], "o-", label="Markov chain: bound")
    ax.plot(ks, [r["gpt_bound"] for r in rows], "s-", label="GPT (context k): bound")
    ax.plot([r["k"] for r in mk], [r["markov_empirical"] for r in mk], "o:", color="C0", alpha=0.6,
            label="Markov: empirical")
    ax.plot(ks, [r["gpt_empirical"] for r in rows], "s:", color="C1", alpha=0.6, label="GPT: empirical")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    random_guess_line(ax, rows[0]["random_guess"])
    ax.set_xlabel("context length k (tokens)")
    ax.set_ylabel("bits per token (log scale)")
    ax.set_title("Token-level bound against context length")
    ax.legend(fontsize=8)
    return save_figure(fig, out)
