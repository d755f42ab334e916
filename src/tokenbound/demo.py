"""`tokenbound demo`: the main job, end to end on the default corpus (docs/design.md).

prepare (stdlib, BPE) → train a compressed GPT for a fixed number of steps → quantize + entropy-code it → certify it
(token level, document-level baseline, held-out) → train a dense GPT of the same preset for a fixed number of
steps and certify it on the held-out split (a test-set certificate, designated in advance as the demo's headline) →
Markov-chain baselines of order 1–3 on the same tokens → report (Markdown + PNG) → print the table.

Every stage writes its artifact under OUT and is skipped when that artifact already exists (``stages.py``, the
mechanism the studies use too), so an interrupted demo resumes where it stopped (training itself resumes from its
checkpoint).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import ensure_parent_dir, read_json
from .errors import TimeLimitReached, TokenboundError
from .stages import Stages


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings; frozen, so `demo` derives any change (``dataclasses.replace``) instead of editing the
    caller's config."""

    corpus: str = "stdlib"
    tokenizer: str = "bpe:8192"
    val_fraction: float = 0.05
    preset: str = "demo"
    # SubLoRA (LoRA in every layer group, trained in a 20,000-dimensional random subspace): the only demo-sized
    # parameterization whose message (~66k bits) is small enough for m = 3M tokens (docs/training.md, compression.md)
    layers: str = "lora:8"
    subspace: int | None = 20_000
    # A fixed number of steps, so the certificate is the same on a fast or a slow machine; `train_minutes` is
    # only an abort limit (the demo then stops with a message and resumes on the next run).
    train_steps: int = 500
    train_minutes: float | None = None
    compress_method: str = "quant:levels=11"
    # The headline model: a dense GPT of the same preset, trained for `dense_steps` on the training split and
    # certified on the held-out split with a test-set bound (docs/theory.md §10). Its other settings are the
    # preset's; its step count was picked among `dense_steps_grid` after the frontier study had shown their
    # held-out rates on this very split, so the certificate pays log2(len(grid)) bits for that choice
    # (`dense_steps_choice`). 0 skips it (the SubLoRA certificate is then the headline).
    dense_steps: int = 1000
    dense_steps_grid: tuple[int, ...] = (170, 500, 1000)
    # Block sampling over strided windows: one forward pass scores 64 tokens (docs/scoring.md)
    context: str = "doc:128/64"
    sampler: str = "block"
    samples: int = 1500
    heldout_samples: int = 800
    doc_samples: int = 16
    markov_samples: int = 10_000
    markov_orders: tuple[int, ...] = (1, 2, 3)
    seed: int = 0
    device: str = "cpu"


def demo(out: Path = Path("demo_out"), *, minutes: float | None = None, cfg: DemoConfig | None = None,
         progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the demo under `out`; return {"table": markdown, "certificates": {...}, "seconds": ...}."""
    from .compress.stage import compress
    from .data.prepare import prepare
    from .evaluate.bound import bound, summary_lines
    from .models.markov_fit import fit_store
    from .report import write_report
    from .train.checkpoint import work_dir_for
    from .train.trainer import train

    cfg = cfg or DemoConfig()
    if minutes is not None:
        if not math.isfinite(minutes) or minutes <= 0:
            raise TokenboundError(f"must be a positive number of minutes, got {minutes}", param="minutes")
        cfg = dataclasses.replace(cfg, train_minutes=float(minutes))
    if cfg.dense_steps and cfg.dense_steps not in cfg.dense_steps_grid:
        raise TokenboundError(f"must be one of dense_steps_grid {cfg.dense_steps_grid}, the choices its "
                              f"certificate pays for", param="dense_steps", value=cfg.dense_steps)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TokenboundError("is a file, not the demo's working directory", param="out", value=out)
    ensure_parent_dir(out, "out")  # a file in the way or no write access: one line naming `out`
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise TokenboundError(f"cannot create it ({e.strerror or e})", param="out", value=out) from None
    started = time.time()
    data, run, comp = out / "data", out / "run", out / "compressed"
    certs = out / "certificates"
    stages = Stages("demo")
    stage = stages.run

    stage("prepare", data, lambda: prepare(cfg.corpus, cfg.tokenizer, data, val_fraction=cfg.val_fraction,
                                           seed=cfg.seed))
    def train_stage(run_dir: Path, layers: str, subspace: int | None, steps: int) -> None:
        try:
            train(data, run_dir, preset=cfg.preset, layers=layers, subspace=subspace, steps=steps,
                  max_minutes=cfg.train_minutes, seed=cfg.seed, device=cfg.device, progress=progress,
                  resume=work_dir_for(run_dir).exists())
        except TimeLimitReached as e:
            raise TimeLimitReached(f"training stopped at its {cfg.train_minutes:g}-minute limit and is checkpointed; "
                                   f"rerun the demo (same --out) to continue ({e})", param="minutes") from e

    stage("train", run, lambda: train_stage(run, cfg.layers, cfg.subspace, cfg.train_steps))
    stage("compress", comp, lambda: compress("run", run, cfg.compress_method, comp, data=data, seed=cfg.seed,
                                             device=cfg.device, progress=progress))
    names: dict[str, str] = {}
    gpt_cert = certs / "gpt.json"
    stage("bound (token level + document level)", gpt_cert,
          lambda: bound(comp, data, gpt_cert, samples=cfg.samples, context=cfg.context, sampler=cfg.sampler,
                        doc_samples=cfg.doc_samples, seed=cfg.seed, device=cfg.device, progress=progress))
    model_label = f"GPT {cfg.preset} {'SubLoRA' if cfg.subspace else cfg.layers}"
    names[str(gpt_cert)] = f"{model_label} ({cfg.compress_method})"
    held = certs / "gpt-heldout.json"
    stage("bound (held-out)", held, lambda: bound(comp, data, held, samples=cfg.heldout_samples, context=cfg.context,
                                                  sampler=cfg.sampler, heldout=True, seed=cfg.seed,
                                                  device=cfg.device, progress=progress))
    names[str(held)] = f"{model_label} (held-out)"
    cert_paths = [gpt_cert, held]
    if cfg.dense_steps:
        dense_run, dense_cert = out / "run-dense", certs / "dense-heldout.json"
        stage("train (dense)", dense_run, lambda: train_stage(dense_run, "dense", None, cfg.dense_steps))
        grid = len(cfg.dense_steps_grid)
        choice = {"dense_steps_choice": math.log2(grid)} if grid > 1 else {}
        stage("bound dense (held-out)", dense_cert, lambda: bound(
            dense_run, data, dense_cert, samples=cfg.heldout_samples, context=cfg.context, sampler=cfg.sampler,
            heldout=True, seed=cfg.seed, device=cfg.device, progress=progress, extra_bits=choice))
        names[str(dense_cert)] = f"GPT {cfg.preset} dense (held-out)"
        cert_paths.insert(0, dense_cert)
    for k in cfg.markov_orders:
        mdir, mcert = out / f"markov-{k}", certs / f"markov-{k}.json"
        stage(f"markov order {k}", mdir, lambda: fit_store(data, k, mdir))
        stage(f"bound markov order {k}", mcert, lambda: bound(mdir, data, mcert, samples=cfg.markov_samples,
                                                             seed=cfg.seed, progress=progress))
        names[str(mcert)] = f"Markov order {k}"
    cert_paths += [certs / f"markov-{k}.json" for k in cfg.markov_orders]
    report = write_report(cert_paths, out / "report.md", title="tokenbound demo", names=names)
    table = "\n".join(line for line in report.splitlines() if line.startswith("|"))
    sections = [(f"Generalization bound on the training tokens ({names[str(gpt_cert)]}, token level):",
                 summary_lines(read_json(gpt_cert)))]
    if cfg.dense_steps:
        sections.insert(0, (f"Headline: a test-set certificate of the dense GPT ({cfg.dense_steps} steps) on the "
                            f"held-out split (docs/theory.md §10):",
                            summary_lines(read_json(cert_paths[0]))))
    return {"table": table, "headline": sections[0][1], "sections": sections,
            "certificates": [str(p) for p in cert_paths],
            "report": str(out / "report.md"), "timings": stages.timings, "seconds": round(time.time() - started, 1)}
