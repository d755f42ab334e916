"""`frontier`: certified bits per byte against the training budget and the corpus size.

A grid of points (corpus, budget); a budget is a number of optimizer steps, never wall-clock time, so a seed
gives the same table on any machine. At each point, on that corpus's TokenStore:

1. the demo's certified model (``demo.DemoConfig``: a SubLoRA GPT of the ``demo`` preset, ``quant:levels=11``,
   the ``doc:128/64`` block sampler with a fixed number of draws) trained for `budget` steps, compressed and
   certified: its certificate's headline bits per byte;
2. a dense GPT of the same preset trained for the same steps on the same batches (same seed), uncompressed: its
   held-out bits per token on the store's ``val/`` split (``common.evaluation``, the shared evaluator of
   ``evaluate/loss.py``) over the val split's bytes per token; the certified model is evaluated the same way;
3. that dense model's test-set certificate on the ``val/`` split (``bound --heldout``, the demo's headline
   recipe: its block sampler and ``heldout_samples`` draws; docs/theory.md §10);
4. gzip -9 and xz -9e on the certified text, as the certificate records them (``reference_compressors``,
   ``evaluate/compressors.py``).

The price of certification is a certified rate minus the uncompressed model's held-out rate, for each kind of
certificate: (1) − (2) for the compressed model's generalization bound, (3) − (2) for the test-set certificate.
Grids: ``spine`` (every budget on the first corpus, the middle budget on the others) or ``full`` (every corpus
at every budget). With ``--data`` the corpus axis is that one store, at every budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import read_manifest
from ..demo import DemoConfig
from ..errors import TokenboundError
from ..report.plots import save_figure
from .common import (DEFAULT_STDLIB_STORE, Study, cert_numbers, certify, compress_run, done, evaluation, finish,
                     markdown_table, pyplot, train_config, train_run)

DESCRIPTION = "the demo's SubLoRA recipe at several step budgets and corpus sizes: certified vs uncompressed bits/byte"

DEMO = DemoConfig()
# The demo's SubLoRA training measured ~7,000 tokens/s (16 x 128-token steps) on a quiet 2-core CPU: the rate at
# which budgets are translated into minutes in the table and plot (a label only; nothing depends on it).
DEMO_STEPS_PER_SECOND = 3.4
DEMO_TOKENS_PER_SECOND = 7000
GRIDS = ("spine", "full")

# The recipe at small and paper scale is the demo's (DemoConfig); corpora: name -> [corpus spec, glob or None]
_DEMO_RECIPE: dict[str, Any] = {
    "preset": DEMO.preset, "model": {}, "train": {}, "layers": DEMO.layers, "subspace": DEMO.subspace,
    "method": DEMO.compress_method, "context": DEMO.context, "sampler": DEMO.sampler, "samples": DEMO.samples,
    "heldout_samples": DEMO.heldout_samples,
    "tokenizer": DEMO.tokenizer, "val_fraction": DEMO.val_fraction, "eval_tokens": 32768,
    "corpora": {"stdlib": ["stdlib", None], "stdlib+tests": ["stdlib+tests", None], "python": ["python", None]}}
SETTINGS: dict[str, dict[str, Any]] = {
    # byte-level stores of two nested sets of standard-library files (0.36 MB and 1.8 MB): seconds
    "tiny": {"preset": "tiny", "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
             "train": {"batch_size": 8}, "layers": "lora:2", "subspace": 200, "method": DEMO.compress_method,
             "context": "doc:32/16", "sampler": DEMO.sampler, "samples": 40, "heldout_samples": 20,
             "tokenizer": "byte",
             "val_fraction": 0.25, "eval_tokens": 512,
             "corpora": {"email": ["stdlib", "email/*.py"], "e*": ["stdlib", "e*/**/*.py"]},
             "budgets": [4, 8, 16], "grid": "spine"},
    # about 0.8, 2.5 and 5 minutes of the demo's SubLoRA training (1 : 3 : 6; the middle one is the demo's own 500
    # steps), so that the whole grid, dense models and the `python` corpus included, fits an hour on 2 cores
    "small": {**_DEMO_RECIPE, "budgets": [170, 500, 1000], "grid": "spine"},
    # about 10, 30 and 60 minutes of the demo's SubLoRA training on 2 cores, every corpus at every budget
    "paper": {**_DEMO_RECIPE, "budgets": [2040, 6120, 12240], "grid": "full"},
}


@dataclass(frozen=True)
class Point:
    """One point of the grid: a corpus (its name in the settings) trained for `steps` optimizer steps."""

    corpus: str
    steps: int

    @property
    def name(self) -> str:
        """File-name form, e.g. ``stdlib-and-tests-600``."""
        return f"{slug(self.corpus)}-{self.steps}"


def slug(corpus: str) -> str:
    """A corpus name as a file name (``stdlib+tests`` -> ``stdlib-and-tests``)."""
    return corpus.replace("+", "-and-").replace("*", "x").replace("/", "-")


def grid_points(corpora: list[str], budgets: list[int], grid: str) -> list[Point]:
    """The grid's points in the order they run: ``spine`` = every budget on corpora[0], then the middle budget
    on each other corpus; ``full`` = every corpus at every budget."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    if grid == "full":
        return [Point(c, b) for c in corpora for b in budgets]
    middle = budgets[len(budgets) // 2]
    return [Point(corpora[0], b) for b in budgets] + [Point(c, middle) for c in corpora[1:]]


def corpus_store(study: Study, s: dict[str, Any], corpus: str) -> Path:
    """The TokenStore of `corpus`: ``--data`` if given; the project's ``data/stdlib`` for the plain stdlib corpus
    of the demo's tokenizer when it has been prepared (``common.text_store``); else prepared into OUT/data/NAME
    (seed 0, as the project's stores are)."""
    if study.data is not None:
        return study.data
    spec, glob = s["corpora"][corpus]
    if (spec, glob, s["tokenizer"], s["val_fraction"]) == ("stdlib", None, DEMO.tokenizer, DEMO.val_fraction) \
            and done(DEFAULT_STDLIB_STORE) and done(DEFAULT_STDLIB_STORE / "val"):
        return DEFAULT_STDLIB_STORE.resolve()
    from ..data.prepare import prepare

    target = study.path("data", slug(corpus))
    study.stage(f"prepare {corpus} ({s['tokenizer']})", target, lambda: prepare(
        spec, s["tokenizer"], target, val_fraction=s["val_fraction"], seed=0, glob=glob))
    return target


def check_store(path: Path) -> None:
    """Bits per byte need the store's text (a tokenizer) and a held-out ``val/`` split."""
    from ..data.store import TokenStore

    store = TokenStore.open(path)
    if store.tokenizer is None or not store.mean_bytes_per_token:
        raise TokenboundError("the store records no tokenizer, so it has no bits per byte (prepare it with "
                              "tokenbound prepare --tokenizer ...)", param="data", value=path)
    if store.val is None or not store.val.num_tokens:
        raise TokenboundError("no val/ split to evaluate the uncompressed model on (prepare it with "
                              "--val-fraction)", param="data", value=path)


def run_point(study: Study, s: dict[str, Any], point: Point, data: Path) -> tuple[dict[str, Any], list[Path]]:
    """Train both models of one point, compress and certify the SubLoRA one, certify the dense one on the
    held-out split, evaluate both held out; returns (row, [SubLoRA certificate, dense test-set certificate])."""
    from ..data.store import TokenStore

    steps = point.steps
    cfg = train_config(s["preset"], s["model"], {**s["train"], "steps": steps, "eval_interval": steps})
    sub = train_run(study, f"sublora-{point.name}", data, cfg, layers=s["layers"], subspace=s["subspace"])
    dense = train_run(study, f"dense-{point.name}", data, cfg)
    comp = compress_run(study, f"sublora-{point.name}", sub, s["method"], data)
    cert = certify(study, point.name, comp, data, samples=s["samples"], context=s["context"], sampler=s["sampler"])
    dense_cert = certify(study, f"dense-heldout-{point.name}", dense, data, heldout=True,
                         samples=s["heldout_samples"], context=s["context"], sampler=s["sampler"])
    val = TokenStore.open(data).val
    val_bytes = val.mean_bytes_per_token
    dense_bits = evaluation(study, f"dense-{point.name}", dense, val.path, s["eval_tokens"])
    cert_bits = evaluation(study, f"sublora-{point.name}", comp, val.path, s["eval_tokens"])
    c = cert_numbers(cert)
    sub_man, dense_man = read_manifest(sub), read_manifest(dense)
    row = {"corpus": point.corpus, "steps": steps, "point": point.name, "store": str(data),
           "training_tokens": sub_man.get("tokens"), "minutes_at_demo_rate": steps / DEMO_STEPS_PER_SECOND / 60,
           "val_tokens": val.num_tokens, "val_bytes_per_token": val_bytes,
           "train_bytes_per_token": TokenStore.open(data).mean_bytes_per_token,
           "dense_params": dense_man.get("coded_params"), "dense_heldout_bits_per_token": dense_bits,
           "dense_heldout_bits_per_byte": dense_bits / val_bytes,
           "certified_heldout_bits_per_token": cert_bits, "certified_heldout_bits_per_byte": cert_bits / val_bytes,
           "sublora_tokens_per_s": tokens_per_s(sub_man), "dense_tokens_per_s": tokens_per_s(dense_man),
           **c}
    d = cert_numbers(dense_cert)
    row.update({"dense_certificate": str(dense_cert), "dense_test_set_bound": d["bound"],
                "dense_test_set_bits_per_byte": d["bits_per_byte"]})
    row["price_of_certification"] = row["bits_per_byte"] - row["dense_heldout_bits_per_byte"]
    row["price_of_test_set_certification"] = row["dense_test_set_bits_per_byte"] - row["dense_heldout_bits_per_byte"]
    return row, [cert, dense_cert]


def tokens_per_s(run_manifest: dict[str, Any]) -> float | None:
    """A Run's training throughput (its manifest's tokens over its wall time), or None if not recorded."""
    tokens, seconds = run_manifest.get("tokens"), run_manifest.get("wall_time_s")
    return tokens / seconds if tokens and seconds else None


def run(study: Study) -> dict[str, Any]:
    s = dict(SETTINGS[study.scale])
    if study.data is not None:
        check_store(study.data)
        s["corpora"] = {study.data.name: ["--data", str(study.data)]}
        s["grid"] = "full"
    points = grid_points(list(s["corpora"]), s["budgets"], s["grid"])
    rows, certs = [], []
    stores = {c: corpus_store(study, s, c) for c in dict.fromkeys(p.corpus for p in points)}
    for point in points:
        row, point_certs = run_point(study, s, point, stores[point.corpus])
        rows.append(row)
        certs += point_certs
    table = markdown_table(rows, [
        ("corpus", "corpus"), ("num_tokens", "m (tokens)"), ("steps", "steps"),
        ("minutes_at_demo_rate", "≈ minutes (demo rate)"), ("message_bits", "message bits"),
        ("bound", "certified bits/token"), ("bits_per_byte", "certified bits/byte"),
        ("certified_heldout_bits_per_byte", "certified model held-out bits/byte"),
        ("dense_heldout_bits_per_byte", "dense (uncompressed) held-out bits/byte"),
        ("price_of_certification", "price of certification (bits/byte)"),
        ("dense_test_set_bits_per_byte", "dense test-set certificate bits/byte"),
        ("price_of_test_set_certification", "price, test-set certificate (bits/byte)"),
        ("gzip_bits_per_byte", "gzip -9 bits/byte"), ("xz_bits_per_byte", "xz -9e bits/byte")])
    plot = plot_frontier(rows, study.path("frontier.png"))
    return finish(study, title="Frontier: certified bits per byte against training budget and corpus size",
                  table=table, notes=notes_for(study, s, rows), plots=[plot], settings=s, rows=rows,
                  certificates=certs, extra={"stores": {c: str(p) for c, p in stores.items()},
                                             "grid_points": [p.name for p in points]})


def notes_for(study: Study, s: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    first = {}
    for r in rows:
        first.setdefault(r["corpus"], r)
    data = "; ".join(f"`{c}` = `{r['store']}` (m = {r['num_tokens']:,} tokens, {r['train_bytes_per_token']:.3f} "
                     f"bytes/token; val {r['val_tokens']:,} tokens, {r['val_bytes_per_token']:.3f} bytes/token)"
                     for c, r in first.items())
    shape = f" {s['model']}" if s["model"] else ""
    return [
        f"Data: {data}.",
        f"Certified model at every point: preset `{s['preset']}`{shape} with layers `{s['layers']}` in a "
        f"{s['subspace']:,}-dimensional random subspace (SubLoRA), trained for the point's steps "
        f"({s['train'] or 'batches as in the preset'}), compressed with `{s['method']}`, certified with context "
        f"`{s['context']}`, the {s['sampler']} sampler and {s['samples']:,} draws (seed {study.seed}: the same draws "
        f"at every point of a corpus). Uncompressed model: a dense GPT of the same preset, same steps, same "
        f"batches. Held-out columns: mean bits/token on {s['eval_tokens']:,} tokens of seeded windows of the "
        f"store's `val/` split (not certificates) over the val split's bytes/token. Price of certification = "
        f"certified bits/byte − dense held-out bits/byte. Dense test-set certificate: the dense model certified on "
        f"the whole `val/` split (`bound --heldout`, {s['heldout_samples']:,} draws, same context and sampler; "
        f"message 0, docs/theory.md §10), over the val split's bytes/token; its price is that rate − dense "
        f"held-out bits/byte. gzip/xz: the certificate's reference compressors on the certified text (reference "
        f"numbers, not bounds).",
        f"Budgets are optimizer steps (the same table on any machine); the minutes column converts them at "
        f"{DEMO_STEPS_PER_SECOND} steps/s, the demo's SubLoRA training speed (~{DEMO_TOKENS_PER_SECOND:,} "
        f"tokens/s with 16 x 128-token steps on a quiet 2-core CPU). This run's own training throughput is in "
        f"results.json (`sublora_tokens_per_s`, `dense_tokens_per_s` of each row; wall-clock numbers, kept out of "
        f"this table so that a rerun with the same seed writes the same table)."]


def plot_frontier(rows: list[dict[str, Any]], out: Path) -> Path:
    """Certified bits/byte against steps, one line per corpus; the dense model's held-out rate (dashed), its
    test-set certificate (triangles) and gzip / xz (horizontal, thin) in the same colour as reference lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    for i, corpus in enumerate(corpora):
        rs = sorted((r for r in rows if r["corpus"] == corpus), key=lambda r: r["steps"])
        x, color = [r["steps"] for r in rs], f"C{i}"
        ax.plot(x, [r["bits_per_byte"] for r in rs], "o-", color=color, label=f"{corpus}: SubLoRA, training-set bound")
        ax.plot(x, [r["dense_heldout_bits_per_byte"] for r in rs], "s--", color=color, mfc="none",
                label=f"{corpus}: dense held-out (uncompressed)")
        ax.plot(x, [r["dense_test_set_bits_per_byte"] for r in rs], "^-", color=color, ms=5, lw=1,
                label=f"{corpus}: dense, test-set certificate")
        for key, ls, name in (("gzip_bits_per_byte", ":", "gzip -9"), ("xz_bits_per_byte", "-.", "xz -9e")):
            if rs[0][key] is not None:
                ax.axhline(rs[0][key], color=color, ls=ls, lw=1, alpha=0.8, label=f"{corpus}: {name}")
    steps = sorted({r["steps"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(steps, [f"{v:,}" for v in steps])
    ax.minorticks_off()
    if len(steps) == 1:
        ax.set_xlim(steps[0] / 1.5, steps[0] * 1.5)
    ax.set_xlabel("training budget (optimizer steps, log scale)")
    ax.set_ylabel("bits per byte")
    top = ax.secondary_xaxis("top", functions=(lambda v: v / DEMO_STEPS_PER_SECOND / 60,
                                               lambda m: m * 60 * DEMO_STEPS_PER_SECOND))
    minutes = [v / DEMO_STEPS_PER_SECOND / 60 for v in steps]
    top.set_xticks(minutes, [f"{m:.2g}" for m in minutes])
    top.minorticks_off()
    top.set_xlabel(f"≈ minutes of the demo's SubLoRA training at {DEMO_STEPS_PER_SECOND} steps/s", fontsize=8)
    ax.set_title("Certified (two kinds) vs uncompressed bits per byte")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(corpora)) or 1,
              frameon=False)
    return save_figure(fig, out)
