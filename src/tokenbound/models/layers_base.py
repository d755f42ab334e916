"""What every linear parameterisation shares: seeded tensor generation and coded/seeded bookkeeping.

Invariant (the message-length contract, see docs/layers.md):
- the *coded* tensors of a module are exactly its ``nn.Parameter``s with ``requires_grad=True``;
- every frozen tensor that is regenerated from a seed is a non-persistent buffer
  (``register_buffer(..., persistent=False)``), drawn in ``__init__`` from an explicit integer seed with a
  local ``torch.Generator`` on CPU in float32 (then moved with the module), never from the global RNG, so it is
  bit-identical in every process and on every machine running the same torch version.
"""
from __future__ import annotations

import abc

import hashlib

import torch
import torch.nn as nn

# Std of a GPT-2 dense weight entry; structured layers scale their factors so that the entries of their
# explicit dense matrix have (approximately) this std at initialisation.
DENSE_INIT_STD = 0.02


def derive_seed(seed: int, name: str) -> int:
    """A 63-bit seed for the stream called `name` under `seed`; stable across machines and Python versions."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_normal(shape: tuple[int, ...], std: float, seed: int, name: str) -> torch.Tensor:
    """float32 CPU tensor of N(0, std²) entries, a pure function of (seed, name, shape, std)."""
    gen = torch.Generator(device="cpu").manual_seed(derive_seed(seed, name))
    return torch.randn(shape, generator=gen, dtype=torch.float32, device="cpu") * float(std)


def coded_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors a message must code: parameters with requires_grad, by name (tied ones once)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def seeded_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen tensors regenerated from seeds (non-persistent buffers), by name: they cost no bits."""
    persistent = set(module.state_dict(keep_vars=True))
    return {name: b for name, b in module.named_buffers() if name not in persistent}


def count_coded_params(module: nn.Module) -> int:
    """Number of scalars the message codes for `module` (tied parameters counted once)."""
    return sum(p.numel() for p in coded_parameters(module).values())


class StructuredLinear(nn.Module, metaclass=abc.ABCMeta):
    """Base of the non-dense layers: ``forward(x[..., in]) -> [..., out]`` = x Wᵀ + bias.

    Subclasses implement ``_apply_weight(x)`` (x Wᵀ without materialising W where possible) and
    ``dense_weight()`` (the explicit [out, in] matrix, built from the factors; differentiable, for tests).
    The bias, when present, is coded and starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    @abc.abstractmethod
    def _apply_weight(self, x: torch.Tensor) -> torch.Tensor:
        """x Wᵀ (no bias)."""

    @abc.abstractmethod
    def dense_weight(self) -> torch.Tensor:
        """The explicit [out, in] matrix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._apply_weight(x)
        return y + self.bias if self.bias is not None else y

    @property
    def num_coded_params(self) -> int:
        return count_coded_params(self)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
