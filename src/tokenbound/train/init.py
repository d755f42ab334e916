"""Starting a training run from a trained Run's weights (``train --init-from RUN``): full or LoRA fine-tuning.

Rules (docs/training.md, "Fine-tuning from a Run"):
- the base is a finished Run with dense layers and no subspace; the new model has its shape (every GPTConfig
  field except ``layers``, ``dropout``, ``context`` and ``seed`` must agree);
- each layer group of the new model is ``dense`` (full fine-tuning: the base's weight is the starting point)
  or ``lora:R`` (the base's weight becomes the frozen LoRA base; the adapter starts at B = 0, so the model starts
  exactly at the base); the head stays dense (tied to the embedding as in the base); embeddings, norms and
  biases start at the base's values and are trained in both cases;
- a LoRA base taken from another Run is not regenerable from a seed (the message-length contract of
  models/layers_base.py), so a LoRA fine-tune is written *merged*: the finished Run is a dense model of the
  base's shape (W = W0 + scale * B A), self-contained and coded like any dense Run. Its work directory
  (checkpoints) holds the adapter; resuming re-applies the base, identified by its sha256;
- the finished Run records the base (``init_from``) and the stores the base has seen (``inherited_stores``), so
  held-out checks (evaluate/heldout.py) and compressed models know it has seen the pretraining data too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..artifacts import KIND_RUN, path_record, read_manifest, resolve_recorded_path, sha256_dir
from ..errors import TokenboundError
from ..models.gpt import GPTConfig, build_model, load_run_module
from ..models.layers import DenseLinear, LoRALinear, StructuredLinear, parse_kind, parse_layer_spec

FLAG = "--init-from"
FREE_FIELDS = ("layers", "dropout", "context", "seed")  # what a fine-tune may set differently from its base
FINETUNE_KINDS = ("dense", "lora")


@dataclass(frozen=True)
class InitFrom:
    """The base Run a training run starts from, identified by the sha256 of its directory."""

    path: Path
    sha256: str

    def record(self, referrer: Path) -> dict[str, Any]:
        return {**path_record(self.path, referrer), "sha256": self.sha256}


def open_base(path: str | Path) -> InitFrom:
    """The base Run at `path` (a one-line error naming `init_from` if it is not a finished Run)."""
    path = Path(path)
    if not (path / "manifest.json").exists():
        raise TokenboundError("not a finished Run directory (no manifest.json)", param="init_from", value=path)
    read_manifest(path, KIND_RUN)
    return InitFrom(path, sha256_dir(path))


def resolve_base(record: dict[str, Any], referrer: Path) -> InitFrom:
    """The base recorded by a run (resuming it): found again and checked to be unchanged."""
    path = resolve_recorded_path(record, referrer, "init_from", sha256=record.get("sha256"), identify=sha256_dir,
                                 flag=FLAG)
    base = open_base(path)
    if base.sha256 != record.get("sha256"):
        raise TokenboundError("the base Run changed since this run started from it", param="init_from", value=path)
    return base


def check_compatible(cfg: GPTConfig, base: GPTConfig, where: Path) -> None:
    """Refuse a new model that cannot start from (or be merged back into the shape of) the base."""
    if base.subspace_dim or cfg.subspace_dim:
        raise TokenboundError("fine-tuning from a Run is not supported with a subspace", param="init_from", value=where)
    if any(parse_kind(kind)[0] != "dense" for kind in parse_layer_spec(base.layers).values()):
        raise TokenboundError(f"the base must have dense layers, it has {base.layers!r}",
                              param="init_from", value=where)
    for f in dataclasses.fields(GPTConfig):
        if f.name not in FREE_FIELDS and getattr(cfg, f.name) != getattr(base, f.name):
            raise TokenboundError(f"the base has {f.name} {getattr(base, f.name)!r}, the new model "
                                  f"{getattr(cfg, f.name)!r} (a fine-tune keeps the base's shape; only "
                                  f"{', '.join(FREE_FIELDS)} may differ)", param="init_from", value=where)
    spec = parse_layer_spec(cfg.layers)
    bad = {g: k for g, k in spec.items() if parse_kind(k)[0] not in FINETUNE_KINDS}
    if bad or spec["head"] != "dense":
        raise TokenboundError("a fine-tune from a Run takes dense or lora layers with a dense "
                              "head, e.g. attn=lora:4,mlp=lora:4", param="layers", value=cfg.layers)


def load_base(base: InitFrom, device: str = "cpu") -> tuple[nn.Module, GPTConfig]:
    return load_run_module(base.path, device=device)


def copy_weights(target: nn.Module, source: nn.Module) -> None:
    """Set `target` to compute what `source` computes (same shape; `source` dense or any layer kind).

    A dense layer of `target` takes the source layer's explicit weight; a LoRA layer takes it as its frozen base
    (its adapter is left as it is: B = 0 at initialization). Every other parameter is copied by name."""
    handled: set[int] = set()
    with torch.no_grad():
        for name, mod in target.named_modules():
            if not isinstance(mod, StructuredLinear):
                continue
            src = source.get_submodule(name)
            weight = src.dense_weight().detach()
            if isinstance(mod, DenseLinear):
                mod.weight.copy_(weight)
            elif isinstance(mod, LoRALinear):
                mod.base_weight.copy_(weight)
            else:
                raise TokenboundError(f"layer {name} of kind {type(mod).__name__} cannot start from a Run",
                                      param="init_from")
            if mod.bias is not None:
                mod.bias.copy_(src.bias)
            handled.update(id(p) for p in mod.parameters())
        params = dict(source.named_parameters())
        for name, p in target.named_parameters():
            if id(p) not in handled:
                p.copy_(params[name])


def has_adapter(cfg: GPTConfig) -> bool:
    return any(parse_kind(kind)[0] == "lora" for kind in parse_layer_spec(cfg.layers).values())


def merged(model: nn.Module, cfg: GPTConfig) -> tuple[nn.Module, GPTConfig]:
    """The dense model (same shape) equal to a LoRA fine-tune: W = W0 + scale * B A, everything else as is."""
    dense_cfg = dataclasses.replace(cfg, layers="dense")
    dense = build_model(dense_cfg).to(next(model.parameters()).device)
    copy_weights(dense, model)
    return dense, dense_cfg


def inherited_stores(base: InitFrom, referrer: Path) -> list[dict[str, Any]]:
    """The stores the base has seen (its training store and what it inherited), recorded relative to
    `referrer` (the new run)."""
    from .checkpoint import run_data_store

    man = read_manifest(base.path, KIND_RUN)
    out: list[dict[str, Any]] = []
    data = man.get("data")
    if isinstance(data, dict) and data.get("sha256"):
        located = run_data_store(base.path)
        out.append({"role": "training (of the base Run)", "sha256": data["sha256"],
                    **({} if located is None else path_record(located, referrer))})
    out += [e for e in relocated_stores(base.path, referrer) if all(o["sha256"] != e["sha256"] for o in out)]
    return out


def _locate(entry: dict[str, Any], referrer: Path) -> Path | None:
    if not entry.get("path"):
        return None
    try:
        return resolve_recorded_path(entry, referrer, "data", sha256=entry["sha256"],
                                     identify=lambda p: read_manifest(p).get("sha256"))
    except TokenboundError:
        return None


def relocated_stores(run: Path, referrer: Path) -> list[dict[str, Any]]:
    """A Run's ``inherited_stores``, re-recorded relative to `referrer` (e.g. a model compressed from it)."""
    out = []
    for entry in read_manifest(run, KIND_RUN).get("inherited_stores") or []:
        if isinstance(entry, dict) and entry.get("sha256"):
            located = _locate(entry, run)
            out.append({"role": entry.get("role", "training"), "sha256": entry["sha256"],
                        **({} if located is None else path_record(located, referrer))})
    return out
