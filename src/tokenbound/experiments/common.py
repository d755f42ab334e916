"""Shared plumbing of the studies: scales, resumable stages (``stages.py``), data, pipeline wrappers, outputs.

A study writes under its output directory OUT:
- ``data/`` (when it prepares its own TokenStore), ``runs/``, ``compressed/``, ``markov/``: the artifacts;
- ``certificates/*.json`` (+ their ``.stats/`` directories): every certificate, each verified at the end;
- ``table.md``, ``*.png``, ``results.json`` (settings, seeds, numbers, verification, timings).

Invariants:
- every stage writes one artifact atomically (the pipeline functions do) and is skipped when that artifact
  already exists, so an interrupted study resumes where it stopped (training resumes from its checkpoint);
- every random choice derives from the study seed (``Study.seed``), recorded in results.json; the table and
  plots are a function of the artifacts only, so a rerun with the same seed writes the same table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..artifacts import MANIFEST, read_json, write_bytes, write_json
from ..errors import TokenboundError
from ..report.flat import markdown_table  # noqa: F401  (the studies' tables: one format with the report's)
from ..stages import Stages, done

SCALES = ("tiny", "small", "paper")
DEFAULT_STDLIB_STORE = Path("data/stdlib")  # the project's stdlib BPE-8192 store, when it has been prepared
SMALL_TOKENIZER = "bpe:8192"


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise TokenboundError(f"must be one of {', '.join(SCALES)}, got {scale!r}", param="scale")
    return scale


@dataclass
class Study:
    """One run of one study: where it writes, at which scale, with which seed, on which data."""

    name: str
    out: Path
    scale: str = "small"
    seed: int = 0
    data: Path | None = None
    device: str = "cpu"
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    extra_bits: dict[str, float] = field(default_factory=dict)  # paid by every certificate (--extra-bits)

    def __post_init__(self) -> None:
        from ..bounds.budget import check_extra_bits

        self.out = Path(self.out)
        check_scale(self.scale)
        self.extra_bits = check_extra_bits(self.extra_bits)
        if self.data is not None:
            self.data = Path(self.data)
            if not (self.data / MANIFEST).exists():
                raise TokenboundError("not a TokenStore directory (no manifest.json)", param="data", value=self.data)
        self.out.mkdir(parents=True, exist_ok=True)

    @property
    def stages(self) -> Stages:
        """The study's stages (log lines prefixed with its name; timings recorded in ``self.timings``)."""
        return Stages(self.name, self.timings)

    def log(self, msg: str) -> None:
        self.stages.log(msg)

    def stage(self, label: str, target: Path, fn: Callable[[], Any]) -> bool:
        """Run `fn` unless `target` (a .json file, or a directory with a manifest) already exists; return
        whether it ran (``stages.Stages.run``)."""
        return self.stages.run(label, target, fn)

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def cert_path(self, name: str) -> Path:
        return self.path("certificates", f"{name}.json")


# -- data ----------------------------------------------------------------------------------------------------
def synthetic_documents(num_docs: int, seed: int, vocab: int, eot: int = 0, min_len: int = 8,
                        max_len: int = 40) -> list[np.ndarray]:
    """Learnable toy documents (tiny scale): noisy arithmetic progressions over ids 1..vocab-1, each ending
    with eot."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(num_docs):
        n = int(rng.integers(min_len, max_len))
        a, step = int(rng.integers(1, vocab)), int(rng.integers(1, 4))
        noise = (rng.random(n) < 0.1) * rng.integers(0, 2, n)
        docs.append(np.append((a + step * np.arange(n) + noise) % (vocab - 1) + 1, eot).astype(np.int64))
    return docs


def _stream(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]]).astype(np.int64)
    return np.concatenate(docs), offsets


def synthetic_store(path: Path, seed: int, vocab: int = 32, train_docs: int = 300, val_docs: int = 40) -> Path:
    """A small TokenStore with a ``val/`` split of synthetic documents (for the tiny scale); held-out documents
    that also occur in training are dropped, so the split is a genuine test set."""
    from ..data.store import write_store

    path = Path(path)
    train = synthetic_documents(train_docs, seed, vocab)
    seen = {d.tobytes() for d in train}
    val = [d for d in synthetic_documents(val_docs, seed + 1, vocab) if d.tobytes() not in seen]
    if not done(path):
        write_store(path, *_stream(train), vocab_size=vocab, eot=0)
    if not done(path / "val"):
        write_store(path / "val", *_stream(val), vocab_size=vocab, eot=0)
    return path


def text_store(study: Study) -> Path:
    """The study's TokenStore: ``--data`` if given; at tiny scale a synthetic one; at small scale the project's
    stdlib BPE-8192 store (data/stdlib) when present, else it is prepared into OUT/data (1–2 minutes)."""
    if study.data is not None:
        return study.data
    if study.scale == "tiny":
        return synthetic_store(study.path("data"), study.seed)
    if study.scale == "paper":
        raise TokenboundError("the paper scale needs a TokenStore of an OpenWebText-like corpus "
                              "(tokenbound prepare --corpus CORPUS --tokenizer bpe:50257 ...)", param="data")
    if done(DEFAULT_STDLIB_STORE):
        return DEFAULT_STDLIB_STORE.resolve()
    from ..data.prepare import prepare

    target = study.path("data")
    study.stage("prepare stdlib", target, lambda: prepare("stdlib", SMALL_TOKENIZER, target, val_fraction=0.05,
                                                          seed=0))
    return target


# -- pipeline wrappers (each one resumable stage) ------------------------------------------------------------
def train_config(preset: str, model: dict[str, Any] | None = None, train: dict[str, Any] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """A ``{"model", "train"}`` config: the named preset with `model` / `train` fields overridden."""
    from .. import configs

    base = configs.preset(preset)
    return {"model": {**base["model"], **(model or {})}, "train": {**base["train"], **(train or {})}}


def train_run(study: Study, name: str, data: Path, config: dict[str, dict[str, Any]], *, layers: str | None = None,
              subspace: int | None = None, seed: int | None = None, init_from: Path | None = None,
              label: str | None = None) -> Path:
    """Train (or resume, or skip) the Run OUT/runs/NAME from `config`; returns its path. `init_from`: start from
    that finished Run's weights (fine-tuning, docs/training.md); a resumed run continues from what it recorded."""
    from ..train.checkpoint import work_dir_for
    from ..train.trainer import train

    run = study.path("runs", name)
    cfg_file = study.path("runs", f"{name}.config.json")
    if not done(run):
        write_json(cfg_file, config)

    def go():
        resume = work_dir_for(run).exists()
        return train(data, run, config=cfg_file, layers=layers, subspace=subspace,
                     seed=study.seed if seed is None else seed, device=study.device, progress=study.progress,
                     resume=resume, init_from=None if resume else init_from)

    study.stage(label or f"train {name}", run, go)
    return run


def compress_run(study: Study, name: str, run: Path, method: str, data: Path | None = None) -> Path:
    """Compress a Run with `method` into OUT/compressed/NAME (skipped when present); returns its path."""
    from ..compress.stage import compress

    out = study.path("compressed", name)
    study.stage(f"compress {name} ({method})", out, lambda: compress(
        "run", run, method, out, data=data, seed=study.seed, device=study.device, progress=study.progress))
    return out


def certify(study: Study, name: str, model: Path, data: Path, **kwargs: Any) -> Path:
    """Certificate OUT/certificates/NAME.json of `model` on `data` (``evaluate.bound.bound`` keywords);
    the sampling seed is the study seed, so every model of a study is scored on the same positions, and the
    study's `extra_bits` are paid on top of any the caller passes (a name in both is refused)."""
    from ..evaluate.bound import bound

    out = study.cert_path(name)
    kwargs.setdefault("seed", study.seed)
    if study.extra_bits:
        own = dict(kwargs.get("extra_bits") or {})
        if set(own) & set(study.extra_bits):
            raise TokenboundError(f"{sorted(set(own) & set(study.extra_bits))} also charged by the "
                                  f"study itself for {name}", param="extra_bits")
        kwargs["extra_bits"] = {**own, **study.extra_bits}
        recorded = read_json(out).get("inputs", {}).get("extra_bits", {}) if done(out) else study.extra_bits
        if any(recorded.get(k) != v for k, v in study.extra_bits.items()):
            raise TokenboundError(f"{out} exists without these extra bits; resume with the same "
                                  f"--extra-bits or use a new --out", param="extra_bits")
    study.stage(f"bound {name}", out, lambda: bound(model, data, out, device=study.device,
                                                     progress=study.progress, **kwargs))
    return out


def evaluation(study: Study, name: str, model_path: Path, store_path: Path, tokens: int) -> float:
    """Mean bits/token of a model on fixed seeded windows of a store (cached in OUT/eval/NAME.json)."""
    from ..evaluate.loss import bits_per_token
    from ..data.store import TokenStore
    from ..models.loading import load

    out = study.path("eval", f"{name}.json")
    if not out.exists():
        res = bits_per_token(load(model_path, device=study.device), TokenStore.open(store_path), tokens,
                             seed=study.seed)
        write_json(out, {**res, "model": str(model_path), "store": str(store_path)})
    return float(read_json(out)["bits_per_token"])


def verify_all(study: Study, paths: Iterable[Path]) -> dict[str, list[str]]:
    """{certificate file name: problems} for every certificate (problems [] = verified)."""
    from ..evaluate.verify import verify

    out = {}
    for p in paths:
        out[Path(p).name] = verify(Path(p), device=study.device)
        if out[Path(p).name]:
            study.log(f"verify {p}: " + "; ".join(out[Path(p).name]))
    return out


def unsmoothed_bits(prob: np.ndarray) -> float:
    """The model's own mean loss −log2 p over sampled positions (what "empirical" is before α-smoothing)."""
    return float(np.mean(-np.log2(np.maximum(prob, np.finfo(float).tiny))))


def cert_numbers(path: Path) -> dict[str, Any]:
    """The numbers a study table shows for one certificate (report/flat.py; bits per token, top-k: error
    rates), its path, and "unsmoothed": the model's own loss on the sampled positions ("empirical" is the
    smoothed loss at the certificate's α, what the bound adds to)."""
    from ..bounds.schema import Certificate
    from ..evaluate.bound import load_stats
    from ..report.flat import certificate_numbers

    cert = read_json(path, "certificate")
    stats = load_stats(cert, Path(path))
    return {"certificate": str(path), **certificate_numbers(Certificate.from_json(cert)),
            "unsmoothed": unsmoothed_bits(stats.prob)}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(study: Study, *, title: str, table: str, notes: list[str], plots: list[Path],
           settings: dict[str, Any], rows: list[dict[str, Any]], certificates: list[Path],
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify every certificate, write OUT/table.md and OUT/results.json; return the results dict."""
    verification = verify_all(study, certificates)
    bad = {k: v for k, v in verification.items() if v}
    md = "\n".join([f"# {title}", "", f"Scale `{study.scale}`, seed {study.seed}. Bits per token unless stated; "
                    "top-k columns are error-rate bounds. Every certificate listed in results.json "
                    + ("verifies (`tokenbound verify`)." if not bad else f"— {len(bad)} FAILED verification."),
                    "", table, "", *notes, "", *[f"![{p.stem}]({p.name})" for p in plots], ""])
    write_bytes(study.path("table.md"), md.encode())
    # Stage timings accumulate over resumed invocations (a skipped stage keeps the time it took when it ran).
    previous = study.path("results.json")
    timings = {**(read_json(previous).get("timings_s", {}) if previous.exists() else {}), **study.timings}
    results = {"study": study.name, "scale": study.scale, "seed": study.seed, "device": study.device,
               "settings": settings, "rows": rows, "certificates": [str(p) for p in certificates],
               "verification": verification, "verified": not bad, "plots": [str(p) for p in plots],
               "timings_s": timings, "recomputed": sorted(study.timings), "extra_bits": study.extra_bits,
               **(extra or {})}
    write_json(study.path("results.json"), _jsonable(results))
    return results


def _jsonable(obj: Any) -> Any:
    """Replace numpy scalars and non-finite floats (JSON has no inf) by plain values / strings."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2)
