"""Linear parameterisations chosen per layer group by a spec (``--layers``), and the factory the GPT calls.

Spec grammar (docs/layers.md): comma-separated items, each ``GROUP=KIND`` (GROUP in attn, mlp, head) or a bare
``KIND`` that sets every group not named explicitly; groups default to ``dense``. KIND is one of
``dense`` | ``lowrank:R`` | ``lora:R`` | ``lora:R:SCALE`` | ``kron`` | ``kron:O1xI1`` | ``monarch`` | ``monarch:B``.

Every layer returned by ``make_linear`` keeps the contract of ``layers_base``: coded tensors are exactly the
parameters with requires_grad; frozen tensors (the LoRA base) are non-persistent buffers regenerated from `seed`.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import TokenboundError
from .kronecker import KroneckerLinear
from .layers_base import (DENSE_INIT_STD, StructuredLinear, coded_parameters, count_coded_params, derive_seed,
                          seeded_buffers, seeded_normal)
from .monarch import MonarchLinear

GROUPS = ("attn", "mlp", "head")
KINDS = ("dense", "lowrank", "lora", "kron", "monarch")
DEFAULT_MONARCH_BLOCKS = 4  # the seed paper's default

__all__ = ["GROUPS", "KINDS", "parse_layer_spec", "parse_kind", "make_linear", "DenseLinear", "LowRankLinear",
           "LoRALinear", "KroneckerLinear", "MonarchLinear", "StructuredLinear", "coded_parameters",
           "seeded_buffers", "count_coded_params", "derive_seed"]


class DenseLinear(StructuredLinear):
    """y = x Wᵀ + bias with W [out, in] coded; init N(0, 0.02²) from `seed`."""

    def __init__(self, in_features: int, out_features: int, bias: bool, seed: int):
        super().__init__(in_features, out_features, bias)
        self.weight = nn.Parameter(seeded_normal((out_features, in_features), DENSE_INIT_STD, seed, "dense.weight"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # fused bias

    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def dense_weight(self) -> torch.Tensor:
        return self.weight


class LowRankLinear(StructuredLinear):
    """W = U V with U [out, r], V [r, in], both coded: r·(in + out) scalars. Entries of W start with std 0.02."""

    def __init__(self, in_features: int, out_features: int, bias: bool, seed: int, rank: int):
        super().__init__(in_features, out_features, bias)
        factor_std = (DENSE_INIT_STD ** 2 / rank) ** 0.25
        self.U = nn.Parameter(seeded_normal((out_features, rank), factor_std, seed, "lowrank.U"))
        self.V = nn.Parameter(seeded_normal((rank, in_features), factor_std, seed, "lowrank.V"))

    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.V), self.U)

    def dense_weight(self) -> torch.Tensor:
        return self.U @ self.V


class LoRALinear(StructuredLinear):
    """W = W₀ + scale · B A: W₀ [out, in] frozen, seeded N(0, 0.02²) (a non-persistent buffer, not coded);
    A [r, in] coded, init N(0, 1/in); B [out, r] coded, init 0 (so W = W₀ at init). Coded: r·(in + out)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, seed: int, rank: int, scale: float = 1.0):
        super().__init__(in_features, out_features, bias)
        self.scale = float(scale)
        self.register_buffer("base_weight", seeded_normal((out_features, in_features), DENSE_INIT_STD, seed,
                                                          "lora.base_weight"), persistent=False)
        self.A = nn.Parameter(seeded_normal((rank, in_features), 1.0 / math.sqrt(in_features), seed, "lora.A"))
        self.B = nn.Parameter(torch.zeros(out_features, rank))

    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        # One GEMM with the merged weight: the separate rank-r path makes several extra passes over the [N, out]
        # activations (a K = r GEMM, a scale, an add, and their backward), which cost more than the merge on CPU.
        return F.linear(x, self.dense_weight())

    def dense_weight(self) -> torch.Tensor:
        return torch.addmm(self.base_weight, self.B, self.A, alpha=self.scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.A.shape[0]}, scale={self.scale}"


def _positive_int(text: str, what: str, kind_spec: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise TokenboundError(f"{kind_spec!r}: {what} must be a positive integer, got {text!r}", param="layers")
    return int(text)


def parse_kind(kind_spec: str) -> tuple[str, dict]:
    """``"lora:8:2"`` -> ``("lora", {"rank": 8, "scale": 2.0})``; TokenboundError naming --layers if malformed."""
    name, *args = kind_spec.strip().split(":")
    if name not in KINDS:
        raise TokenboundError(f"unknown layer kind {name!r} in {kind_spec!r} (known: {', '.join(KINDS)})",
                              param="layers")
    n_args = {"dense": (0,), "lowrank": (1,), "lora": (1, 2), "kron": (0, 1), "monarch": (0, 1)}[name]
    if len(args) not in n_args:
        raise TokenboundError(f"{kind_spec!r}: wrong number of ':' arguments for {name}", param="layers")
    if name == "dense":
        return name, {}
    if name == "lowrank":
        return name, {"rank": _positive_int(args[0], "rank", kind_spec)}
    if name == "lora":
        opts: dict = {"rank": _positive_int(args[0], "rank", kind_spec)}
        if len(args) == 2:
            try:
                opts["scale"] = float(args[1])
            except ValueError:
                raise TokenboundError(f"{kind_spec!r}: scale must be a number, got {args[1]!r}",
                                      param="layers") from None
            if not math.isfinite(opts["scale"]):
                raise TokenboundError(f"{kind_spec!r}: scale must be finite", param="layers")
        return name, opts
    if name == "kron":
        if not args:
            return name, {"a_shape": None}
        m = re.fullmatch(r"([0-9]+)x([0-9]+)", args[0])
        if not m or min(int(m[1]), int(m[2])) < 1:
            raise TokenboundError(f"{kind_spec!r}: expected kron:O1xI1 (A's shape), e.g. kron:32x24", param="layers")
        return name, {"a_shape": (int(m[1]), int(m[2]))}
    return name, {"nblocks": _positive_int(args[0], "nblocks", kind_spec) if args else DEFAULT_MONARCH_BLOCKS}


def parse_layer_spec(spec: str) -> dict[str, str]:
    """``"attn=monarch:4,mlp=kron,head=dense"`` -> {"attn": "monarch:4", "mlp": "kron", "head": "dense"}.

    A bare KIND item applies to every group not named explicitly (so ``"dense"`` is all dense, and
    ``"lora:8,head=dense"`` is LoRA except the head). Every kind is validated with ``parse_kind``.
    """
    explicit: dict[str, str] = {}
    default = "dense"
    seen_default = False
    items = [item.strip() for item in str(spec).split(",")]
    if not any(items):
        raise TokenboundError("empty layer spec", param="layers")
    for item in items:
        if not item:
            raise TokenboundError(f"empty item in {spec!r}", param="layers")
        if "=" in item:
            group, kind = (part.strip() for part in item.split("=", 1))
            if group not in GROUPS:
                raise TokenboundError(f"unknown layer group {group!r} in {spec!r} "
                                      f"(known: {', '.join(GROUPS)})", param="layers")
            if group in explicit:
                raise TokenboundError(f"group {group!r} given twice in {spec!r}", param="layers")
            parse_kind(kind)
            explicit[group] = kind
        else:
            if seen_default:
                raise TokenboundError(f"more than one bare kind in {spec!r}", param="layers")
            parse_kind(item)
            default, seen_default = item, True
    return {group: explicit.get(group, default) for group in GROUPS}


def make_linear(kind_spec: str, in_features: int, out_features: int, bias: bool, seed: int) -> nn.Module:
    """The layer of `kind_spec` mapping [..., in] -> [..., out]; all its initial values derive from `seed`.

    The module has ``dense_weight() -> [out, in]`` and ``num_coded_params``.
    """
    name, opts = parse_kind(kind_spec)
    if name == "dense":
        return DenseLinear(in_features, out_features, bias, seed)
    if name == "lowrank":
        return LowRankLinear(in_features, out_features, bias, seed, opts["rank"])
    if name == "lora":
        return LoRALinear(in_features, out_features, bias, seed, opts["rank"], opts.get("scale", 1.0))
    if name == "kron":
        return KroneckerLinear(in_features, out_features, bias, seed, opts["a_shape"])
    return MonarchLinear(in_features, out_features, bias, seed, opts["nblocks"])
