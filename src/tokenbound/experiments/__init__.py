"""The seed paper's studies as reproducible experiments (`tokenbound experiment NAME`).

Each study is a module with ``DESCRIPTION`` (one line) and ``run(study: common.Study) -> dict``; it writes
``OUT/table.md``, ``OUT/*.png``, ``OUT/certificates/*.json`` and ``OUT/results.json`` and is resumable.
Scales: ``tiny`` (seconds; tests), ``small`` (<= 15 minutes on a 2-core CPU; ``frontier``: an hour), ``paper`` (GPU
settings of the seed paper; documented, not run here).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import TokenboundError
from .common import SCALES, Study

# study name -> module (in the order of the issue)
EXPERIMENTS = {
    "markov-vs-context": "markov_context",
    "compression-sweep": "compression_sweep",
    "memorization": "memorization",
    "pretrained-ptq": "pretrained_ptq",
    "scaling": "scaling",
    "chat-vs-base": "chat_base",
    "downstream": "downstream",
    "frontier": "frontier",
}

__all__ = ["EXPERIMENTS", "SCALES", "Study", "describe", "run_experiment"]


def _module(name: str):
    if name not in EXPERIMENTS:
        raise TokenboundError(f"NAME: unknown experiment {name!r} (choose from {', '.join(EXPERIMENTS)})")
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")


def describe(name: str) -> str:
    return _module(name).DESCRIPTION


def run_experiment(name: str, out: str | Path, *, scale: str = "small", seed: int = 0, data: str | Path | None = None,
                   device: str = "cpu", progress: bool = True,
                   extra_bits: dict[str, float] | None = None) -> dict[str, Any]:
    """Run (or resume) study `name` into `out`; returns its results dict (also written to OUT/results.json).

    `extra_bits` ({name: bits}) is paid by every certificate of the study (docs/theory.md §12)."""
    module = _module(name)
    study = Study(name=name, out=Path(out), scale=scale, seed=int(seed), data=None if data is None else Path(data),
                  device=device, progress=progress, extra_bits=dict(extra_bits or {}))
    return module.run(study)
