"""A small nanoGPT-style GPT with pluggable linear layers and document-aware attention.

Architecture: token embedding (+ learned positions, or rotary positions inside attention), pre-LayerNorm
blocks (causal self-attention via ``scaled_dot_product_attention``, then a 4x GELU MLP), a final LayerNorm
and a language-model head, optionally tied to the token embedding.

Invariants:
- ``build_model(config)`` is deterministic: every initial value and every frozen seeded tensor derives from
  ``config.seed`` and the module's name (``derive_seed``), never from the global torch RNG.
- The coded state (what a Run stores and a compressor codes) is exactly the parameters with
  ``requires_grad``; frozen tensors are regenerated from the seed (see ``models/layers.py``, ``subspace.py``).
- With ``segments`` [B, T] (non-decreasing ids), position t attends only to positions <= t of its segment and
  its position index is t minus the start of its segment, so a packed row scores each document exactly as
  if it were alone. ``segments=None`` is plain causal attention with positions 0..T-1.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import TokenboundError
from .base import LanguageModel
from .layers import derive_seed, make_linear, parse_layer_spec

POSITIONS = ("learned", "rotary")
CONTEXTS = ("doc", "stream")


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    block_size: int = 128
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = False
    tie_embeddings: bool = True
    positions: str = "learned"        # "learned" | "rotary"
    layers: str = "dense"             # layer spec (models/layers.py:parse_layer_spec)
    subspace_dim: int | None = None   # train only z in a random subspace of this dimension
    subspace_projection: str = "kron"
    subspace_params: str = "trainable"  # which parameters the subspace covers: "all" | "trainable"
    seed: int = 0
    context: str = "doc"              # the context rule the model trains under: "doc" | "stream"
    eot: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if isinstance(getattr(self, name), int) and getattr(self, name) < 1:
                raise TokenboundError(f"model config: {name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.dropout, (int, float)) and not 0 <= self.dropout < 1:
            raise TokenboundError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.n_embd % self.n_head:
            raise TokenboundError(f"model config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.positions not in POSITIONS:
            raise TokenboundError(f"model config: positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.context not in CONTEXTS:
            raise TokenboundError(f"model config: context must be one of {CONTEXTS}, got {self.context!r}")
        if self.positions == "rotary" and (self.n_embd // self.n_head) % 2:
            raise TokenboundError("model config: rotary positions need an even head dimension")
        if self.subspace_dim is not None and int(self.subspace_dim) < 1:
            raise TokenboundError(f"must be a positive integer, got {self.subspace_dim}", param="subspace")
        if not 0 <= self.eot < self.vocab_size:
            raise TokenboundError(f"model config: eot {self.eot} outside the vocabulary [0, {self.vocab_size})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        from ..configs import strict_from_dict

        return strict_from_dict(cls, d, "model config")

    @property
    def parameterization(self) -> str:
        return self.layers + (f"+subspace:{self.subspace_dim}" if self.subspace_dim else "")


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, name))


def _is_dense(kind: str) -> bool:
    return kind.strip() == "dense"


def position_ids(segments: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """[B, T] position of each token within its segment (0 at each segment start)."""
    t = torch.arange(length, device=device)
    if segments is None:
        return t.expand(batch, length)
    is_start = torch.ones_like(segments, dtype=torch.bool)
    is_start[:, 1:] = segments[:, 1:] != segments[:, :-1]
    start = torch.where(is_start, t, torch.zeros_like(t)).cummax(dim=-1).values
    return t - start


def attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, T, T] mask for SDPA: True where query t may attend key s (s <= t, same segment)."""
    T = segments.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    return (causal & same)[:, None]


def apply_rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary embedding of x [B, H, T, D] at positions pos [B, T] (rotate-half convention)."""
    D = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    angles = pos.to(torch.float32)[:, None, :, None] * inv_freq  # [B, 1, T, D/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, kind: Any, make_linear, name: str):
        super().__init__()
        self.n_head, self.dropout, self.rotary = cfg.n_head, cfg.dropout, cfg.positions == "rotary"
        self.c_attn = make_linear(kind, cfg.n_embd, 3 * cfg.n_embd, cfg.bias, derive_seed(cfg.seed, f"{name}.c_attn"))
        self.c_proj = make_linear(kind, cfg.n_embd, cfg.n_embd, cfg.bias, derive_seed(cfg.seed, f"{name}.c_proj"))
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rotary:
            q, k = apply_rotary(q, pos), apply_rotary(k, pos)
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig, kind: Any, make_linear, name: str):
        super().__init__()
        self.c_fc = make_linear(kind, cfg.n_embd, 4 * cfg.n_embd, cfg.bias, derive_seed(cfg.seed, f"{name}.c_fc"))
        self.c_proj = make_linear(kind, 4 * cfg.n_embd, cfg.n_embd, cfg.bias, derive_seed(cfg.seed, f"{name}.c_proj"))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, spec: dict, make_linear, name: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, spec["attn"], make_linear, f"{name}.attn")
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg, spec["mlp"], make_linear, f"{name}.mlp")

    def forward(self, x, pos, mask):
        x = x + self.attn(self.ln_1(x), pos, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """``forward(idx [B, T], segments=None) -> logits [B, T, V]``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        spec = parse_layer_spec(cfg.layers)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg, spec, make_linear, f"h.{i}") for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        tie = cfg.tie_embeddings and _is_dense(spec["head"])
        self.lm_head = None if tie else make_linear(spec["head"], cfg.n_embd, cfg.vocab_size, False,
                                                    derive_seed(cfg.seed, "lm_head"))
        with torch.no_grad():
            self.wte.weight.normal_(0.0, 0.02, generator=_generator(cfg.seed, "wte"))
            if self.wpe is not None:
                self.wpe.weight.normal_(0.0, 0.02, generator=_generator(cfg.seed, "wpe"))
            # GPT-2's scaled init of the projections into the residual stream (dense layers only; structured
            # layers initialise themselves)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight") and _is_dense(spec["attn" if ".attn." in name else "mlp"]):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * cfg.n_layer), generator=_generator(cfg.seed, name))

    def forward(self, idx: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise TokenboundError(f"input of {T} tokens exceeds the model's block size {self.config.block_size}")
        pos = position_ids(segments, B, T, idx.device)
        mask = None if segments is None else attention_mask(segments)
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        for block in self.h:
            x = block(x, pos, mask)
        x = self.ln_f(x)
        return self.lm_head(x) if self.lm_head is not None else F.linear(x, self.wte.weight)


def build_model(config: GPTConfig | dict) -> nn.Module:
    """The GPT of `config`, wrapped in a SubspaceWrapper when ``subspace_dim`` is set. Deterministic."""
    cfg = config if isinstance(config, GPTConfig) else GPTConfig.from_dict(config)
    model: nn.Module = GPT(cfg)
    if cfg.subspace_dim:
        from .subspace import SubspaceWrapper

        model = SubspaceWrapper(model, int(cfg.subspace_dim), derive_seed(cfg.seed, "subspace"),
                                projection=cfg.subspace_projection, params=cfg.subspace_params)
    return model


def coded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Exactly the trainable tensors (parameters with requires_grad), detached, by their stable names."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_coded_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Set the trainable tensors from `state`; names and shapes must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise TokenboundError(f"model state: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, p in params.items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise TokenboundError(f"model state: {name} has shape {tuple(state[name].shape)}, expected {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(dtype=p.dtype, device=p.device))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``coded``: numel of trainable parameters; ``frozen``: frozen parameters plus buffers (seeded tensors)."""
    seen: set[int] = set()
    coded = frozen = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            coded += p.numel()
        else:
            frozen += p.numel()
    frozen += sum(b.numel() for b in model.buffers())
    return {"coded": coded, "frozen": frozen}


# -- a trained Run behind the LanguageModel interface ----------------------------------------------------------
class GPTLanguageModel(LanguageModel):
    """A GPT module as a LanguageModel: float32 log-softmax, eval mode, no grad."""

    def __init__(self, module: nn.Module, config: GPTConfig):
        self.module = module.eval()
        self.config = config
        self.vocab_size = config.vocab_size
        self.max_context = config.block_size

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def log_probs(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        dev = self.device
        with torch.no_grad():
            logits = self.module(ids.to(dev), segments=None if segments is None else segments.to(dev))
            return F.log_softmax(logits.float(), dim=-1)

    def describe(self) -> dict[str, Any]:
        counts = parameter_counts(self.module)
        return {**super().describe(), "architecture": "gpt", "parameterization": self.config.parameterization,
                "coded_params": counts["coded"], "frozen_params": counts["frozen"], "config": self.config.to_dict()}

    def to(self, device: str) -> "GPTLanguageModel":
        self.module.to(device)
        return self


def load_run_module(path: Path, device: str = "cpu") -> tuple[nn.Module, GPTConfig]:
    """The module and config of a Run directory (frozen parts regenerated from the seed; eval mode)."""
    from safetensors.torch import load_file

    from ..artifacts import KIND_RUN, read_json, read_manifest

    path = Path(path)
    read_manifest(path, KIND_RUN)
    cfg = GPTConfig.from_dict(read_json(path / "config.json", "config.json")["model"])
    weights = path / "model.safetensors"
    if not weights.exists():
        raise TokenboundError(f"{path}: Run is missing model.safetensors")
    module = build_model(cfg)
    load_coded_state_dict(module, load_file(str(weights)))
    return module.to(device).eval(), cfg


def load_run(path: Path, device: str = "cpu") -> LanguageModel:
    """What ``tokenbound.load`` calls for a Run directory."""
    module, cfg = load_run_module(path, device)
    return GPTLanguageModel(module, cfg)
