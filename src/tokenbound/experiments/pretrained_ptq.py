"""`pretrained-ptq`: bounds for a deployed pretrained model under post-training quantization.

SmolLM2-135M-Instruct as shipped (GGUF Q4_1) and re-quantized by our PTQ (GPTQ at 2, 3 and 4 bits from the
GGUF's dequantized weights). For each model:
- message length (the GGUF file itself: 8·bytes + an Elias-gamma length prefix, since the file decodes to the
  model; our PTQ: its verified CompressedModel bitstream);
- held-out bits per token and the test-set bound's arithmetic (message length 0) on held-out documents of a
  proxy corpus, tokenized with the model's own tokenizer. This is *not* a certificate: it assumes the model
  never saw that text, and CPython's standard library is very likely in SmolLM2's pretraining data; it is
  reported as an evaluation on text the model may have seen;
- the token-level generalization bound on that proxy corpus, labelled as a PROXY: the model never trained
  on it (its training data is not available here), so this certificate is a valid statement about the proxy
  store only as if it had been the training set — like the seed paper's LLaMA bounds, which evaluated the
  empirical risk on a public proxy corpus. With m = the proxy's token count it is vacuous for a model this
  size; we report the break-even data size m at which the same statistics would give a non-vacuous bound, and
  (not a certificate) the bound the same statistics give at m = the model's reported training-set size.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..report.plots import plain_log_ticks, random_guess_line, save_figure
from ..errors import TokenboundError
from .common import Study, cert_numbers, certify, finish, markdown_table, pyplot, synthetic_store

DESCRIPTION = "SmolLM2-135M (GGUF Q4_1 and our 2/3/4-bit GPTQ): message length, held-out and proxy bounds"

# SmolLM2-135M was pretrained on 2T tokens (SmolLM2 model card / Allal et al. 2025); the Instruct model was
# then fine-tuned (SFT + DPO) on further data that this number does not include.
SMOLLM2_TRAINING_TOKENS = 2_000_000_000_000

SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"glob": None, "bits": [4, 2], "ptq": "algo=gptq,group=16,calib=2,ctx=32,eval=0", "samples": 20,
             "sampler": "block", "context": "doc:32/16", "training_tokens": 1_000_000},
    "small": {"glob": "*.py", "bits": [4, 3, 2], "ptq": "algo=gptq,group=64,calib=4,ctx=128,eval=0",
              "samples": 64, "sampler": "block", "context": "doc:128/64", "training_tokens": SMOLLM2_TRAINING_TOKENS},
    "paper": {"glob": None, "bits": [4, 3, 2], "ptq": "algo=gptq,group=64,calib=128,ctx=1024,eval=0",
              "samples": 10000, "sampler": "token", "context": "doc:1024", "training_tokens": SMOLLM2_TRAINING_TOKENS},
}


def tiny_model(path: Path, vocab: int, seed: int) -> Path:
    """A randomly initialised 2-layer LLaMA saved as a Hugging Face directory (tiny scale only)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not (path / "config.json").exists():
        torch.manual_seed(seed)
        cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=64,
                          tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
        LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def reference_model(study: Study) -> tuple[Path, str]:
    """(model path, label) of the model as deployed: SmolLM2's GGUF, or a tiny HF model at tiny scale."""
    if study.scale == "tiny":
        return tiny_model(study.path("tiny-llama"), 32, study.seed), "tiny random LLaMA (float32, archive)"
    from ..assets import smollm2_gguf

    return Path(smollm2_gguf()), "SmolLM2-135M-Instruct GGUF Q4_1 (as shipped)"


def file_message(path: Path):
    """The message length of a model file taken as its own code: 8·bytes + Elias-gamma prefix of that length
    (measured by the function `tokenbound verify` re-checks it with)."""
    from ..evaluate.bound import message_length

    return message_length(path, "gguf", measure="file")


def proxy_store(study: Study, model: Path, glob: str | None) -> Path:
    """A TokenStore (with val/) in the model's own tokenizer: --data, a synthetic one (tiny), or stdlib."""
    if study.data is not None:
        return study.data
    if study.scale == "tiny":
        return synthetic_store(study.path("data"), study.seed)
    from ..data.prepare import prepare

    target = study.path("data")
    study.stage("prepare proxy corpus", target, lambda: prepare(
        "stdlib", f"gguf:{model}", target, val_fraction=0.1, seed=study.seed, glob=glob))
    return target


def bound_at_size(cert_path: Path, num_tokens: int) -> float:
    """NOT a certificate: the headline bound recomputed from the certificate's own statistics and inputs with
    the population size m replaced by `num_tokens` (what the bound would be if the proxy statistics were those
    of a training set of that size)."""
    from ..artifacts import read_json
    from ..bounds.certificate import certify as certify_stats
    from ..bounds.schema import CertifyInputs
    from ..evaluate.bound import load_stats

    cert = read_json(cert_path)
    stats = load_stats(cert, cert_path)
    stats = dataclasses.replace(stats, meta={**stats.meta, "population_tokens": int(num_tokens)})
    inp = cert["inputs"]
    out = certify_stats(stats, CertifyInputs(
        message_bits=inp["message_bits"], message_prefix_free=inp["message_prefix_free"],
        extra_bits=inp["extra_bits"], delta=inp["delta"], delta_split=inp["delta_split"],
        alpha_grid=tuple(inp["alpha_grid"]), methods=tuple(inp["methods"])))
    return out.bound_bits_per_token


def run(study: Study) -> dict[str, Any]:
    from ..compress.stage import compress

    s = SETTINGS[study.scale]
    ref, ref_label = reference_model(study)
    data = proxy_store(study, ref, s["glob"])
    from ..data.store import TokenStore

    if TokenStore.open(data).val is None:
        raise TokenboundError("needs a val/ split for the held-out evaluation", param="data", value=data)
    msg = file_message(ref) if ref.suffix == ".gguf" else None
    models: list[tuple[str, Path, Any]] = [(ref_label, ref, msg)]
    for bits in s["bits"]:
        out = study.path("compressed", f"ptq-{bits}bit")
        method = f"ptq:bits={bits},{s['ptq']}"
        src_type = "gguf" if ref.suffix == ".gguf" else "hf"
        study.stage(f"PTQ {bits} bits", out, lambda: compress(src_type, ref, method, out, data=data,
                                                             seed=study.seed, device=study.device,
                                                             progress=study.progress))
        models.append((f"our PTQ: {method}", out, None))
    rows, certs = [], []
    for label, path, message in models:
        key = path.name if path != ref else "gguf-q4_1" if ref.suffix == ".gguf" else "reference"
        kw = {"samples": s["samples"], "sampler": s["sampler"], "context": s["context"], "message": message}
        held = certify(study, f"{key}-heldout", path, data, heldout=True, assume_unseen=True, **kw)
        proxy = certify(study, f"{key}-proxy", path, data, **kw)
        certs += [held, proxy]
        h, p = cert_numbers(held), cert_numbers(proxy)
        rows.append({"model": label, "message_bits": p["message_bits"], "heldout_bits": h["unsmoothed"],
                     "heldout_bound": h["bound"], "proxy_bound": p["bound"], "proxy_empirical": p["empirical"],
                     "proxy_tokens": p["num_tokens"], "break_even_tokens": p["break_even_tokens"],
                     "bound_at_training_size": bound_at_size(proxy, s["training_tokens"]),
                     "random_guess": p["random_guess"], "heldout": h, "proxy": p})
    table = markdown_table(rows, [
        ("model", "model"), ("message_bits", "message bits"), ("heldout_bits", "held-out bits/token"),
        ("heldout_bound", "held-out bound IF unseen (not a certificate)"), ("proxy_bound", "PROXY token-level bound"),
        ("break_even_tokens", "break-even m (tokens)"),
        ("bound_at_training_size", f"proxy stats at m = {s['training_tokens']:.0e} (not a certificate)")])
    plot = plot_ptq(rows, study.path("ptq_bounds.png"))
    notes = [f"Proxy corpus: `{data}` (stdlib `{s['glob'] or '**/*.py'}` in the model's own tokenizer at small "
             f"scale), m = {rows[0]['proxy_tokens']:,} tokens; {s['samples']} sampled draws per certificate "
             f"(sampler `{s['sampler']}`: a draw is one window of the rule, all its scored positions), context "
             f"`{s['context']}` (short, to keep the CPU cost in budget). The PROXY bound treats the proxy "
             "store as if it were the training set: the model never saw it, so it is not a generalization "
             "certificate for SmolLM2's own training distribution (unavailable here). Break-even m: the number of "
             "training tokens at which the same per-token statistics and message length would reach the random-"
             f"guess line. The last column recomputes the headline from the same statistics with m = "
             f"{s['training_tokens']:,} (SmolLM2-135M's reported pretraining tokens; the Instruct fine-tuning "
             "data is not counted) — an illustration in the seed paper's style, not a certificate. Random guess: "
             f"{rows[0]['random_guess']:.3f} bits/token."]
    return finish(study, title="Pretrained model under post-training quantization", table=table, notes=notes,
                  plots=[plot], settings=s, rows=rows, certificates=certs,
                  extra={"data": str(data), "reference_model": str(ref)})


def plot_ptq(rows: list[dict[str, Any]], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for i, r in enumerate(rows):
        name = r["model"].split(",")[0].replace("our PTQ: ", "")
        ax.scatter(r["message_bits"], r["heldout_bits"], marker="o", color=f"C{i}", label=name)
        ax.scatter(r["message_bits"], r["heldout_bound"], marker="^", color=f"C{i}")
        ax.scatter(r["message_bits"], r["bound_at_training_size"], marker="s", color=f"C{i}")
    ax.scatter([], [], marker="o", color="k", label="held-out bits")  # the marker key, in the legend too
    ax.scatter([], [], marker="^", color="k", label="held-out bound if unseen (not a certificate)")
    ax.scatter([], [], marker="s", color="k", label="proxy stats at training size")
    random_guess_line(ax, rows[0]["random_guess"])
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("message length (bits, log scale)")
    ax.set_ylabel("bits per token")
    ax.set_title("Post-training quantization: bits per token against message length", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, out)
