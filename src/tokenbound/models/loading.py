"""`tokenbound.load(path)`: any model artifact -> LanguageModel (docs/design.md §6).

Dispatch is by what the path is, never by guessing from names: a ``.gguf`` file; a directory whose
manifest.json says it is a Run, a CompressedModel or a Markov model; or a Hugging Face model directory
(config.json without a tokenbound manifest). Loaders are imported lazily so that light commands do
not pay for torch or transformers.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..artifacts import KIND_COMPRESSED, KIND_MARKOV, KIND_RUN, MANIFEST, read_manifest
from ..errors import TokenboundError
from .base import LanguageModel

# manifest kind -> "module:function" taking (path, device) and returning a LanguageModel
LOADERS = {
    KIND_RUN: "tokenbound.models.gpt:load_run",
    KIND_COMPRESSED: "tokenbound.models.decoders:load_compressed",
    KIND_MARKOV: "tokenbound.models.markov_fit:load_markov",
    "hf": "tokenbound.models.hf:load_hf",
    "gguf": "tokenbound.models.hf:load_gguf",
}


def artifact_type(path: str | Path) -> str:
    """The loader key for `path` (a manifest kind, 'hf' or 'gguf'); one-line error if unknown."""
    p = Path(path)
    if not p.exists():
        raise TokenboundError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix == ".gguf":
            return "gguf"
        raise TokenboundError(f"{p}: not a model (expected a directory or a .gguf file)")
    if (p / MANIFEST).exists():
        kind = read_manifest(p).get("kind")
        if kind in LOADERS:
            return kind
        raise TokenboundError(f"{p}: manifest kind {kind!r} is not a model")
    if (p / "config.json").exists():
        from .hf import check_safetensors_weights

        check_safetensors_weights(p)  # safetensors only: refused here, naming the user's directory
        return "hf"
    raise TokenboundError(f"{p}: not a tokenbound model, Hugging Face model directory or .gguf file")


def load(path: str | Path, device: str = "cpu") -> LanguageModel:
    """Load any model artifact behind the LanguageModel interface."""
    key = artifact_type(path)
    module, func = LOADERS[key].split(":")
    return getattr(importlib.import_module(module), func)(Path(path), device=device)
