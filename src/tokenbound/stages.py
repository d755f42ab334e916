"""Resumable stages: the mechanism that lets the demo and the studies resume where they stopped.

A stage writes one artifact (a ``.json`` file, or a directory with a ``manifest.json``; the pipeline functions
write both atomically, see ``artifacts.py``) and is skipped when that artifact already exists. Each stage logs
one line when it starts and one when it ends or is skipped, ``[NAME] LABEL ...``, on stderr, and records how long
it took in ``timings`` (only stages that ran are recorded; wall-clock time never decides what is computed).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .artifacts import MANIFEST


def done(target: Path) -> bool:
    """Whether the artifact `target` exists: a ``.json`` file, or a directory holding a manifest."""
    target = Path(target)
    return target.exists() if target.suffix == ".json" else (target / MANIFEST).exists()


@dataclass
class Stages:
    """The stages of one job (``name`` prefixes its log lines) and the seconds each that ran took."""

    name: str
    timings: dict[str, float] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        print(f"[{self.name}] {msg}", file=sys.stderr, flush=True)

    def run(self, label: str, target: Path, fn: Callable[[], Any]) -> bool:
        """Run `fn` unless `target` already exists (`done`); return whether it ran."""
        if done(target):
            self.log(f"{label}: {target} exists, skipped")
            return False
        self.log(f"{label} ...")
        t = time.time()
        fn()
        self.timings[label] = round(time.time() - t, 1)
        self.log(f"{label}: done in {self.timings[label]} s")
        return True
