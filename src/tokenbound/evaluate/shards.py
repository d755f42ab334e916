"""Resumable scoring: a shard directory keyed by a fingerprint of everything that fixes its content.

Layout of ``out_dir``:
- ``plan.json``          the fingerprint (model id, store sha256, context rule, sampler, n, seed, shard size) and
                         its sha256; written first; a later run with another fingerprint is refused.
- ``shard-00000.npz``    results of draws [k·S, (k+1)·S) (arrays of evaluate.forward.Scored plus the fingerprint
                         sha256), each written atomically, so a killed run leaves only whole shards behind.
- ``tokenstats.npz``     the merged TokenStats (written by rank 0 once every shard exists).
Nothing here is loaded with pickle.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import dumps_canonical, read_json, write_bytes, write_json
from ..errors import TokenboundError
from .forward import Scored

PLAN_FILE = "plan.json"
STATS_FILE = "tokenstats.npz"
KIND_SHARDS = "tokenbound.score_shards"


def fingerprint_sha256(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(dumps_canonical(fingerprint).encode()).hexdigest()


def shard_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"shard-{k:05d}.npz"


def claim_dir(out_dir: Path, fingerprint: dict[str, Any], write: bool) -> str:
    """Create (if `write`) or check ``plan.json``; return the fingerprint sha256. Refuses a foreign directory."""
    out_dir = Path(out_dir)
    fp_sha = fingerprint_sha256(fingerprint)
    plan = out_dir / PLAN_FILE
    if plan.exists():
        found = read_json(plan, what="scoring plan")
        if found.get("kind") != KIND_SHARDS or found.get("fingerprint_sha256") != fp_sha:
            diff = sorted(k for k in set(fingerprint) | set(found.get("fingerprint", {}))
                          if fingerprint.get(k) != found.get("fingerprint", {}).get(k))
            raise TokenboundError(f"{out_dir}: holds shards of another scoring run (differs in "
                                  f"{', '.join(diff) or 'format'}); use a fresh directory")
        if write:  # a killed writer may have left its temporary file; only rank 0 gets here, before any scoring
            for stale in out_dir.glob(".shard-*.tmp"):
                stale.unlink(missing_ok=True)
    elif write:
        if out_dir.exists() and any(out_dir.glob("shard-*.npz")):
            raise TokenboundError(f"{out_dir}: has shard files but no {PLAN_FILE}; refusing to mix runs")
        write_json(plan, {"kind": KIND_SHARDS, "fingerprint": fingerprint, "fingerprint_sha256": fp_sha})
    else:
        raise TokenboundError(f"{out_dir}: {PLAN_FILE} missing (rank 0 did not create it)")
    return fp_sha


def write_shard(path: Path, scored: Scored, fp_sha: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{f: getattr(scored, f) for f in Scored.fields()}, fingerprint_sha256=np.array(fp_sha))
    write_bytes(path, buf.getvalue())


def read_shard(path: Path, fp_sha: str) -> Scored:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint_sha256"]) != fp_sha:
                raise TokenboundError(f"{path}: shard of another scoring run; use a fresh directory")
            return Scored(*(z[f] for f in Scored.fields()))
    except (KeyError, ValueError, OSError) as e:
        raise TokenboundError(f"{path}: unreadable shard ({e}); delete it to rescore") from None


def merge_shards(out_dir: Path, num_shards: int, fp_sha: str) -> Scored:
    missing = [k for k in range(num_shards) if not shard_path(out_dir, k).exists()]
    if missing:
        raise TokenboundError(f"{out_dir}: shard {missing[0]} missing after scoring")
    return Scored.concat([read_shard(shard_path(out_dir, k), fp_sha) for k in range(num_shards)])


def plan_sha256(units: np.ndarray) -> str:
    """Hash of a sampling plan's units (little-endian int64), recorded in the TokenStats meta."""
    return hashlib.sha256(np.ascontiguousarray(units, dtype="<i8").tobytes()).hexdigest()


def describe_json(obj: Any) -> Any:
    """A JSON-safe copy (non-JSON values as strings), for provenance fields."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))
