"""Named training presets, in one place: model shape + training hyperparameters.

A preset is ``{"model": {GPTConfig fields}, "train": {TrainConfig fields}}``. The vocabulary size and the
eot id always come from the TokenStore being trained on; the layer spec, subspace dimension, seed and
context rule come from the command line, so every preset combines with every parameterization.
A ``--config FILE`` is a JSON file with the same two keys (either may be partial; missing fields take
the ``TrainConfig`` / ``GPTConfig`` defaults).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TokenboundError


@dataclass
class TrainConfig:
    """Optimisation settings. The schedule is linear warmup then cosine decay to ``min_lr_ratio * lr`` over
    ``steps`` optimizer steps; one step consumes ``batch_size * grad_accum * world_size`` windows."""
    steps: int = 1000
    batch_size: int = 16          # windows per micro-batch per process
    grad_accum: int = 1           # micro-batches per optimizer step per process
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0        # max global gradient norm (0 disables)
    eval_interval: int = 200      # steps between validation runs (and at the end)
    eval_batches: int = 8         # validation micro-batches of batch_size windows each
    checkpoint_interval: int = 200
    log_interval: int = 10
    subspace_lr: float | None = None  # learning rate for runs with a subspace (None: lr)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        cfg = strict_from_dict(cls, d, "train config")
        for name in ("steps", "batch_size", "grad_accum", "eval_batches", "eval_interval", "checkpoint_interval",
                     "log_interval"):
            if int(getattr(cfg, name)) < 1:
                raise TokenboundError(f"train config: {name} must be >= 1, got {getattr(cfg, name)}")
        for name in ("lr", "subspace_lr"):
            if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
                raise TokenboundError(f"train config: {name} must be > 0, got {getattr(cfg, name)}")
        return cfg


def strict_from_dict(cls, d: dict[str, Any], what: str):
    """Build dataclass `cls` from `d`, refusing unknown fields and values of the wrong type (a string for an int,
    a float for an int, a bool for a number, nan) with a one-line error naming `what` and the field."""
    if not isinstance(d, dict):
        raise TokenboundError(f"{what}: expected a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TokenboundError(f"{what}: unknown field(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        expected = _type_names(hints[name])
        if not any(_is_type(value, t) for t in expected):
            raise TokenboundError(f"{what}: {name} must be {' or '.join(expected)}, got {value!r}")
    return cls(**d)


def _type_names(hint) -> list[str]:
    """``int | None`` -> ["int", "null"]: the JSON types a field accepts."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return ["null" if a is type(None) else a.__name__ for a in args]


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if name == "str":
        return isinstance(value, str)
    return True  # a field of another type: left to the dataclass


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # seconds on a CPU: for tests and smoke runs
    "tiny": {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
        "train": {"steps": 60, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "eval_interval": 30,
                  "eval_batches": 2, "checkpoint_interval": 30, "log_interval": 5, "weight_decay": 0.0,
                  "subspace_lr": 0.3},
    },
    # 614k tokens: minutes on a 2-core CPU with the stdlib BPE-8192 store (4-10 min measured on a shared
    # machine); small, to compress to a non-vacuous bound (docs/training.md has the measured numbers)
    "demo": {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128},
        "train": {"steps": 300, "batch_size": 16, "lr": 3e-3, "warmup_steps": 20, "eval_interval": 150,
                  "eval_batches": 16, "checkpoint_interval": 150, "log_interval": 10, "weight_decay": 0.1,
                  "subspace_lr": 0.1},
    },
    # GPT-2 small (124M with vocab 50257), for GPUs
    "gpt2-small": {
        "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "bias": True},
        "train": {"steps": 20000, "batch_size": 12, "grad_accum": 5, "lr": 6e-4, "warmup_steps": 700,
                  "eval_interval": 1000, "eval_batches": 20, "checkpoint_interval": 1000, "log_interval": 10,
                  "weight_decay": 0.1},
    },
}


def preset(name: str) -> dict[str, dict[str, Any]]:
    """A deep copy of the named preset."""
    if name not in PRESETS:
        raise TokenboundError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})", param="preset")
    return copy.deepcopy(PRESETS[name])


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ``{"model": ..., "train": ...}`` JSON config file (e.g. a Run's config.json)."""
    from .artifacts import read_json

    d = read_json(path, "config file")
    if not isinstance(d, dict) or not set(d) <= {"model", "train", "data", "init_from"} or \
            not all(isinstance(d.get(k, {}), dict) for k in ("model", "train")):
        raise TokenboundError("expected a JSON object with 'model' and/or 'train' objects", param="config", value=path)
    return {"model": dict(d.get("model", {})), "train": dict(d.get("train", {}))}
