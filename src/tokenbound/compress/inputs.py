"""What a compression reads and records: its source model (``source_record``), a Run's training store (for the
level grid and QAT) and the list of stores a compressed model has seen (held-out checks, docs/theory.md §10)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import path_record, read_json, read_manifest, sha256_dir, sha256_file
from ..data.store import TokenStore
from ..errors import TokenboundError
from ..train.checkpoint import run_data_store


def open_training_store(run: Path, data: str | Path | None) -> TokenStore:
    """`data` if given, else the run's recorded training store; one-line error (naming ``data``) if neither is
    available."""
    vocab = run_vocab_size(run)
    if data is not None:
        return TokenStore.open(Path(data), check=True).check("data", vocab_size=vocab)
    recorded = run_data_store(run)
    if recorded is None:
        raise TokenboundError(f"needed (the run {run} does not record a training store that exists here)",
                              param="data")
    return TokenStore.open(recorded, check=True).check("data", vocab_size=vocab)


def run_vocab_size(run: Path) -> int | None:
    """The vocabulary of a Run's model, from its config.json (None if not recorded)."""
    cfg_path = Path(run) / "config.json"
    model = read_json(cfg_path, "config.json").get("model") if cfg_path.exists() else None
    return int(model["vocab_size"]) if isinstance(model, dict) and "vocab_size" in model else None


def training_stores_record(run: Path, out: Path, used: Any = None) -> list[dict[str, Any]]:
    """The stores a model compressed from `run` into `out` has seen: the run's training store (its recorded
    sha256), the stores its base Run saw (a fine-tune's ``inherited_stores``) and the store `used` by the
    compressor itself (level grid, QAT), for held-out checks (docs/theory.md §10). Paths are recorded relative
    to `out` (artifacts.path_record)."""
    from ..train.init import relocated_stores

    stores: list[dict[str, Any]] = []
    data = read_manifest(run).get("data")
    if isinstance(data, dict) and data.get("sha256"):
        located = run_data_store(run)
        stores.append({"role": "training", "sha256": data["sha256"],
                       **({} if located is None else path_record(located, out))})
    stores += [e for e in relocated_stores(run, out) if all(s["sha256"] != e["sha256"] for s in stores)]
    if used is not None and all(e["sha256"] != used.sha256 for e in stores):
        stores.append({"role": "compression (level grid / QAT)", "sha256": used.sha256,
                       **path_record(used.path, out)})
    return stores


def source_record(source_type: str, src: Path) -> dict[str, Any]:
    """{"type", "path", "sha256"} of the source (a directory hashes all its files)."""
    digest = sha256_dir(src) if src.is_dir() else sha256_file(src)
    return {"type": source_type, "path": str(src), "sha256": digest}
