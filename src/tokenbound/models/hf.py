"""Pretrained Hugging Face and GGUF causal language models behind the LanguageModel interface (docs/design.md §5, §6).

- ``load_hf(dir)``: a local ``AutoModelForCausalLM`` directory (config.json + safetensors), offline only.
- ``load_gguf(file)``: a ``.gguf`` file through transformers' GGUF reader (needs the ``gguf`` package), which
  dequantizes every tensor to float32; the evaluated weights are exactly those dequantized tensors.

Document-aware masking: with ``segments``, the model receives a 4-D additive attention mask (causal AND same
segment; transformers passes a 4-D mask through unchanged) and ``position_ids`` that restart at each segment,
so a packed row scores each document exactly as if it were alone (up to float rounding). This is supported
for the architectures in ``SEGMENT_AWARE`` (absolute or rotary positions read from ``position_ids`` and the
shared causal-mask helper); other architectures refuse rows with more than one segment.

Vocabulary: ``vocab_size`` is the model's output dimension (the lm_head rows), which may exceed the
tokenizer's size (padding rows). A TokenStore scored with the model must declare that same vocab size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TokenboundError
from .base import LanguageModel

# model_type values whose HF implementation takes position_ids and honours a custom 4-D attention mask
# (tested for llama and gpt2; mistral and qwen2 share llama's attention and masking code path).
SEGMENT_AWARE = frozenset({"llama", "gpt2", "mistral", "qwen2"})


def _offline() -> None:
    # Never reach a model hub: every path we load is local (docs/design.md §5).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """[B, T] index of each token within its segment (0 at the first token of every segment)."""
    t = torch.arange(segments.shape[-1], device=segments.device)
    is_start = torch.ones_like(segments, dtype=torch.bool)
    is_start[:, 1:] = segments[:, 1:] != segments[:, :-1]
    start = torch.where(is_start, t, torch.zeros_like(t)).cummax(dim=-1).values
    return t - start


def segment_additive_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, T, T] additive mask: 0 where query t may attend key s (s <= t and same segment), else the
    dtype's most negative value. Additive (not boolean) so that eager and SDPA attention both accept it."""
    T = segments.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    allowed = causal & (segments[:, :, None] == segments[:, None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segments.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


class HFLanguageModel(LanguageModel):
    """A transformers causal LM (eval mode, no grad, no KV cache) as a LanguageModel.

    Invariants: ``log_probs`` returns float32 log-softmax over exactly ``vocab_size`` (= lm_head rows) entries;
    rows longer than ``max_context`` are refused rather than silently truncated.
    """

    def __init__(self, module: Any, source: dict[str, Any] | None = None):
        self.module = module.eval()
        self.config = module.config
        self.source = dict(source or {})
        out = module.get_output_embeddings()
        self.vocab_size = int(out.weight.shape[0]) if out is not None else int(self.config.vocab_size)
        ctx = getattr(self.config, "max_position_embeddings", None) or getattr(self.config, "n_positions", None)
        self.max_context = int(ctx) if ctx else None

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def model_type(self) -> str:
        return str(getattr(self.config, "model_type", ""))

    def log_probs(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        if ids.ndim != 2:
            raise TokenboundError(f"log_probs: ids must be [B, T], got shape {tuple(ids.shape)}")
        if self.max_context is not None and ids.shape[1] > self.max_context:
            raise TokenboundError(f"log_probs: rows of {ids.shape[1]} tokens exceed the model's context "
                                  f"{self.max_context}")
        dev = self.device
        ids = ids.to(dev)
        kwargs: dict[str, Any] = {}
        if segments is not None:
            segments = segments.to(dev)
            if segments.shape != ids.shape:
                raise TokenboundError(f"log_probs: segments shape {tuple(segments.shape)} != ids shape "
                                      f"{tuple(ids.shape)}")
            multi = bool((segments[:, 1:] != segments[:, :-1]).any()) if ids.shape[1] > 1 else False
            if multi:
                if self.model_type not in SEGMENT_AWARE:
                    raise TokenboundError(f"model type {self.model_type!r}: document-aware masking is supported "
                                          f"only for {sorted(SEGMENT_AWARE)}; use a stream context rule")
                kwargs["attention_mask"] = segment_additive_mask(segments, self.module.dtype)
                kwargs["position_ids"] = segment_positions(segments)
        with torch.no_grad():
            logits = self.module(input_ids=ids, use_cache=False, **kwargs).logits
            return F.log_softmax(logits.float(), dim=-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The evaluated weights by name (tied tensors appear under each of their names)."""
        return self.module.state_dict()

    def describe(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.module.parameters())
        return {**super().describe(), "architecture": self.model_type, "class": type(self.module).__name__,
                "parameters": int(n), "source": self.source}

    def to(self, device: str) -> "HFLanguageModel":
        self.module.to(device)
        return self


def auto_model_class():
    """transformers' ``AutoModelForCausalLM``, offline (one-line error if transformers is not installed)."""
    _offline()
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TokenboundError(f"transformers is not installed (pip install 'tokenbound[hf]'): {e}") from None
    return AutoModelForCausalLM


def quiet_transformers() -> None:
    """Only errors from transformers' logger (no warnings about unused weights and the like)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _skip_random_init():
    """transformers' context that skips weight initialisation (private API: fall back to a no-op)."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - other transformers versions
        return contextlib.nullcontext()
    return no_init_weights()


def module_from_config(config: dict[str, Any], state: dict[str, torch.Tensor], device: str = "cpu",
                       where: str = "model") -> Any:
    """The float32 transformers causal LM of a config dict (with its ``model_type``) holding exactly `state`
    (strict: every tensor, no other), in eval mode on `device`; ties the word embeddings if the config says so."""
    auto = auto_model_class()
    quiet_transformers()
    from transformers import AutoConfig

    cfg = dict(config)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with _skip_random_init():  # every parameter is overwritten below; random init of 100M+ weights is slow
        module = auto.from_config(config, dtype=torch.float32)
    if getattr(config, "tie_word_embeddings", False):
        module.tie_weights()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise TokenboundError(f"{where}: decoded tensors do not fit the architecture ({str(e).splitlines()[0]})") from None
    return module.to(device).eval()


PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_safetensors_weights(path: Path) -> None:
    """Refuse a Hugging Face directory whose weights are only in a pickle checkpoint, with how to convert it."""
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists():
        return
    pickles = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in PICKLE_WEIGHT_SUFFIXES)
    if pickles:
        raise TokenboundError(
            f"{path}: weights only as a pickle checkpoint ({pickles[0]}), which tokenbound does not load (unpickling "
            f"can run code); convert it once in a trusted environment: AutoModelForCausalLM.from_pretrained(DIR)"
            f".save_pretrained(DIR, safe_serialization=True)")
    raise TokenboundError(f"{path}: no model.safetensors (nor *.safetensors shards) in the Hugging Face directory")


def load_hf_module(path: Path, device: str = "cpu") -> Any:
    """The float32 transformers module of a local HF model directory (eval mode)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise TokenboundError(f"{path}: not a Hugging Face model directory (no config.json)")
    check_safetensors_weights(path)
    auto = auto_model_class()
    quiet_transformers()
    try:
        # safetensors only: a pickle checkpoint (pytorch_model.bin) can run code when loaded (docs/pretrained.md)
        module = auto.from_pretrained(str(path), local_files_only=True, dtype=torch.float32, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        raise TokenboundError(f"{path}: cannot load as a Hugging Face causal LM ({str(e).splitlines()[0]})") from None
    return module.to(device).eval()


def load_gguf_module(path: Path, device: str = "cpu") -> Any:
    """The transformers module of a .gguf file, every tensor dequantized to float32 (eval mode)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".gguf":
        raise TokenboundError(f"{path}: not a .gguf file")
    auto = auto_model_class()
    quiet_transformers()
    try:
        module = auto.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True,
                                      dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise TokenboundError(f"{path}: cannot load GGUF ({str(e).splitlines()[0]})") from None
    # The GGUF loader records its quantization_config; the weights are already dequantized floats, and a
    # model rebuilt from this config must not try to re-read the file.
    if hasattr(module.config, "quantization_config"):
        try:
            del module.config.quantization_config
        except AttributeError:  # pragma: no cover
            pass
    return module.to(device).eval()


def load_hf(path: Path, device: str = "cpu") -> LanguageModel:
    """What ``tokenbound.load`` calls for a Hugging Face model directory."""
    from ..artifacts import sha256_dir

    module = load_hf_module(path, device)
    return HFLanguageModel(module, {"type": "hf", "path": str(path), "sha256": sha256_dir(path)})


def load_gguf(path: Path, device: str = "cpu") -> LanguageModel:
    """What ``tokenbound.load`` calls for a ``.gguf`` file."""
    from ..artifacts import sha256_file

    module = load_gguf_module(path, device)
    return HFLanguageModel(module, {"type": "gguf", "path": str(path), "sha256": sha256_file(path)})


def load_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer embedded in a .gguf file (a transformers fast tokenizer), offline."""
    _offline()
    from transformers import AutoTokenizer

    path = Path(path)
    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise TokenboundError(f"{path}: cannot read its tokenizer ({str(e).splitlines()[0]})") from None
