"""Run directories and checkpoints (docs/design.md §4): safetensors for tensors, JSON for everything else.

A run is built in a work directory ``RUN.partial`` next to ``RUN`` and renamed to ``RUN`` only when training
ends, so ``RUN`` is never half-written; an interrupted run leaves ``RUN.partial`` (with its last checkpoint)
for ``--resume``. Layout of a finished run:

- ``config.json``        ``{"model": GPTConfig, "train": TrainConfig, "data": {...}}``
- ``model.safetensors``  the coded state only (requires_grad parameters); frozen parts regenerate from the seed
- ``train_log.jsonl``    one JSON object per logged step / validation
- ``manifest.json``      kind tokenbound.run, data sha256, parameter counts, seed, final val bits/token, wall time
- ``checkpoint/``        ``model.safetensors``, ``optimizer.safetensors`` (AdamW moments and step counters),
                         ``state.json`` (step, elapsed time, optimizer hyperparameters) — for exact resume

Invariant: resuming from ``checkpoint/`` at step k reproduces, bit for bit on the same device and software,
the steps k, k+1, ... of the uninterrupted run (batches and dropout noise are functions of (seed, step)).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..artifacts import (KIND_RUN, MANIFEST, atomic_output_dir, ensure_parent_dir, make_manifest, path_record,
                         read_json, read_manifest, replace_dir, resolve_recorded_path, write_json)
from ..errors import TokenboundError
from ..models.gpt import coded_state_dict, load_coded_state_dict

CHECKPOINT = "checkpoint"
LOG = "train_log.jsonl"


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _contiguous_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """The coded state of `model` as safetensors, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(_contiguous_cpu(coded_state_dict(model)), str(tmp))
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> None:
    """Write ``run_dir/checkpoint`` (replacing any older one only once the new one is complete)."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    with atomic_output_dir(run_dir / CHECKPOINT, force=True) as tmp:
        save_weights(tmp / "model.safetensors", model)
        save_file(_contiguous_cpu(tensors), str(tmp / "optimizer.safetensors"))
        write_json(tmp / "state.json", {**state, "optimizer_param_groups": opt["param_groups"],
                                        "optimizer_scalars": scalars})


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from ``run_dir/checkpoint``; return its state.json."""
    ck = run_dir / CHECKPOINT
    if not (ck / "state.json").exists():
        raise TokenboundError(f"{run_dir} has no checkpoint to resume from", param="resume")
    state = read_json(ck / "state.json", "checkpoint state")
    device = next(model.parameters()).device
    load_coded_state_dict(model, load_file(str(ck / "model.safetensors"), device=str(device)))
    tensors = load_file(str(ck / "optimizer.safetensors"), device=str(device))
    opt_state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        opt_state.setdefault(int(idx), {})[key] = value
    for idx, extra in state.pop("optimizer_scalars").items():
        opt_state.setdefault(int(idx), {}).update(extra)
    groups = state.pop("optimizer_param_groups")
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise TokenboundError(f"{ck}: optimizer state does not match the model ({e})", param="resume") from None
    return state


def read_log(run_dir: Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The log records of a run (those with step <= up_to_step when given)."""
    path = run_dir / LOG
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if up_to_step is None or r.get("step", 0) <= up_to_step]


def write_log(run_dir: Path, records: list[dict[str, Any]]) -> None:
    from ..artifacts import write_bytes

    write_bytes(run_dir / LOG, "".join(json.dumps(r) + "\n" for r in records).encode())


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record (the work directory is private to this run until it is finalized)."""
    with open(run_dir / LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def finalize_run(work: Path, out: Path, model: torch.nn.Module, config: dict[str, Any],
                 manifest_fields: dict[str, Any]) -> None:
    """Write the weights, config and manifest into `work`, then move it to `out` (replacing an older run).

    The training store's path (``data.path`` of the config and the manifest) is recorded relative to `out`
    (``artifacts.path_record``), so a folder holding both the run and its store can be moved as a whole.
    """
    config, manifest_fields = _with_portable_data(config, out), _with_portable_data(manifest_fields, out)
    save_weights(work / "model.safetensors", model)
    write_json(work / "config.json", config)
    write_json(work / MANIFEST, make_manifest(KIND_RUN, **manifest_fields))
    replace_dir(work, out)


def _with_portable_data(fields: dict[str, Any], out: Path) -> dict[str, Any]:
    data = fields.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and data.get("relative_to") is None:
        return {**fields, "data": {**data, **path_record(data["path"], out)}}
    return fields


def resume_source(out: Path) -> Path:
    """The run that ``--resume`` continues: the interrupted ``out.partial`` if any, else the finished `out`."""
    work = work_dir_for(out)
    for candidate in (work, out):
        if (candidate / "config.json").exists():
            return candidate
    raise TokenboundError(f"neither {out} nor {work} holds a run", param="resume")


def prepare_work_dir(out: Path, resume: bool, force: bool = False) -> Path:
    """Create or reuse the work directory ``out.partial`` and return it.

    Without resume, `out` and ``out.partial`` must not exist, unless `force`: then a stale ``out.partial`` is
    removed and an existing `out` is replaced only when the new run is finalized. With resume, an interrupted
    ``out.partial`` is continued in place; a finished `out` is copied to ``out.partial`` and continued.
    """
    work = work_dir_for(out)
    if not resume:
        if out.exists() and not force:
            raise TokenboundError("already exists (use --resume to continue it, --force to "
                                  "overwrite it, or another --out)", param="out", value=out)
        if out.exists() and not out.is_dir():
            raise TokenboundError("is a file, not a run directory", param="out", value=out)
        if work.exists() and not force:
            raise TokenboundError(f"an interrupted run is in {work} (use --resume to continue it, "
                                  f"--force to start over, or delete it)", param="out", value=out)
        ensure_parent_dir(work, "out")
        if work.exists():
            shutil.rmtree(work)
        try:
            work.mkdir()
        except OSError as e:
            raise TokenboundError(f"cannot create {work} ({e.strerror or e})", param="out", value=out) from None
        return work
    if resume_source(out) == out:
        read_json(out / MANIFEST, "manifest.json")
        shutil.copytree(out, work)
    return work


def run_data_store(run: Path) -> Path | None:
    """The TokenStore a Run was trained on, as recorded in its manifest or config (None if not recorded).

    The recorded path is relative to the run (``artifacts.path_record``; older runs: to the directory the
    training command ran in); its absolute hint is used only if the store there has the recorded sha256.
    """
    man = read_manifest(run)
    candidates: list[Any] = [man.get("data"), man.get("data_path"), man.get("store")]
    cfg_path = run / "config.json"
    if cfg_path.exists():
        cfg = read_json(cfg_path, "config.json")
        candidates += [cfg.get("data"), (cfg.get("train") or {}).get("data") if isinstance(cfg.get("train"), dict)
                       else None]
    for c in candidates:
        if not isinstance(c, (dict, str)):
            continue
        try:
            return resolve_recorded_path(c, run, "data", sha256=c.get("sha256") if isinstance(c, dict) else None,
                                         identify=lambda p: read_manifest(p).get("sha256"))
        except TokenboundError:
            continue
    return None
