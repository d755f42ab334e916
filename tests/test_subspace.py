"""Subspace / SubLoRA: z = 0 is the base module, grad z = Pᵀ grad θ against an explicit P, only z is coded,
P is regenerated bit-exactly in a fresh process, and D = 124M with d = 10⁶ fits in memory (by estimate)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from tokenbound.coding.hashing import state_sha256
from tokenbound.errors import TokenboundError
from tokenbound.models.layers import coded_parameters, make_linear, seeded_buffers
from tokenbound.models.subspace import KroneckerProjection, SubspaceWrapper, estimate_memory_bytes


def _net(kind: str = "dense", seed: int = 0) -> nn.Module:
    """A tiny deterministic MLP of `kind` layers (with a LayerNorm, so there are non-linear parameters too)."""
    return nn.Sequential(make_linear(kind, 8, 16, True, seed), nn.GELU(), nn.LayerNorm(16),
                         make_linear(kind, 16, 8, False, seed + 1))


def _x() -> torch.Tensor:
    return torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize("kind,params", [("dense", "all"), ("lora:2", "trainable"), ("kron", "all"),
                                         ("monarch:2", "trainable")])
def test_zero_z_is_the_base_module(kind, params):
    x = _x()
    expected = _net(kind)(x)
    wrapped = SubspaceWrapper(_net(kind), dim=5, seed=1, params=params)
    assert torch.equal(wrapped.z, torch.zeros(5))
    torch.testing.assert_close(wrapped(x), expected, rtol=0, atol=0)


def _covered_flat(wrapper: SubspaceWrapper) -> torch.Tensor:
    return torch.cat([wrapper.module.get_buffer(n).reshape(-1) for n in wrapper.names])


@pytest.mark.parametrize("kind", ["dense", "lora:2", "kron"])
def test_forward_and_z_gradient_match_an_explicit_projection(kind):
    wrapped = SubspaceWrapper(_net(kind), dim=6, seed=3, params="trainable").double()
    with torch.no_grad():
        wrapped.z.copy_(torch.randn(6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    x = _x().double()
    P = wrapped.projection.materialize()
    assert P.shape == (wrapped.num_subspace_params, 6)

    # θ = θ₀ + P z, built explicitly and run through the plain module.
    theta_flat = (_covered_flat(wrapped) + P @ wrapped.z.detach()).requires_grad_(True)
    params, offset = {}, 0
    for name, shape in zip(wrapped.names, wrapped.shapes):
        n = torch.Size(shape).numel()
        params[name] = theta_flat[offset:offset + n].view(shape)
        offset += n
    ref = functional_call(wrapped.module, params, (x,))
    out = wrapped(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)

    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(wrapped.z.grad, P.T @ theta_flat.grad, rtol=1e-10, atol=1e-12)
    assert wrapped.z.grad.abs().sum() > 0


def test_projection_matches_materialised_and_has_unit_columns():
    for D, d in [(39, 7), (1000, 50), (17, 17), (3, 10), (1, 1)]:
        proj = KroneckerProjection(D, d, seed=2)
        P = proj.materialize()
        z = torch.randn(d, generator=torch.Generator().manual_seed(D))
        torch.testing.assert_close(proj(z), P @ z, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(P.norm(dim=0), torch.ones(d), rtol=1e-5, atol=1e-5)


def test_only_z_is_coded_and_covered_parameters_become_seeded_buffers():
    net = _net("lora:2")
    lora_coded = set(coded_parameters(net))
    wrapped = SubspaceWrapper(net, dim=5, seed=1, params="trainable")
    assert set(coded_parameters(wrapped)) == {"z"} and wrapped.num_coded_params == 5
    assert set(wrapped.state_dict()) == {"z"}
    seeded = set(seeded_buffers(wrapped))
    assert {f"module.{n}" for n in lora_coded} <= seeded
    assert {"module.0.base_weight", "module.3.base_weight", "projection.A", "projection.B"} <= seeded
    # SubLoRA covers only the LoRA factors (+ biases), the LayerNorm's and nothing frozen.
    assert set(wrapped.names) == lora_coded
    assert wrapped.num_subspace_params == sum(p.numel() for p in _net("lora:2").parameters())


def test_params_trainable_skips_frozen_parameters_and_all_covers_them():
    net = _net("dense")
    net[2].weight.requires_grad_(False)
    assert "2.weight" not in SubspaceWrapper(net, 3, 0, params="trainable").names
    net = _net("dense")
    net[2].weight.requires_grad_(False)
    assert "2.weight" in SubspaceWrapper(net, 3, 0, params="all").names


def test_tied_parameters_are_covered_once_and_stay_tied():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            return self.head(self.emb(idx))

    torch.manual_seed(0)
    wrapped = SubspaceWrapper(Tied(), dim=3, seed=0)
    assert wrapped.names == ["emb.weight"] and wrapped.num_subspace_params == 40
    assert wrapped.module.head.weight is wrapped.module.emb.weight
    wrapped = wrapped.double()  # a dtype/device move copies buffers one by one: the tie must survive it
    with torch.no_grad():
        wrapped.z.fill_(0.5)
    idx = torch.tensor([[1, 2, 3]])
    theta = wrapped.theta()["emb.weight"]
    assert theta.dtype == torch.float64
    torch.testing.assert_close(wrapped(idx), theta[idx] @ theta.T)


def test_training_z_changes_the_function():
    wrapped = SubspaceWrapper(_net("kron"), dim=4, seed=0)
    x = _x()
    before = wrapped(x).detach()
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.5)
    loss = wrapped(x).square().mean()
    loss.backward()
    opt.step()
    assert not torch.equal(wrapped(x).detach(), before)
    assert wrapped(x).square().mean() < loss


def test_gpt2_small_scale_fits_in_memory_by_estimate():
    """D = 124M covered scalars, d = 10⁶: the seeded projection is ~90 MB, not D·d floats (~500 TB)."""
    D, d = 124_000_000, 1_000_000
    (D1, D2), (d1, d2) = KroneckerProjection.factor_shapes(D, d)
    assert D1 * D2 >= D > (D1 - 1) * D2 and d1 * d2 >= d > (d1 - 1) * d2
    est = estimate_memory_bytes(D, d)
    assert est["projection"] < 100 * 2**20
    assert est["z"] == 8_000_000 and est["per_forward"] == 2 * 4 * D


_REGEN_SCRIPT = """
import sys, torch
from tokenbound.coding.hashing import state_sha256
from tokenbound.models.subspace import KroneckerProjection
print(state_sha256(dict(KroneckerProjection(12345, 321, seed=77).named_buffers())))
"""


def test_projection_regenerates_identically_in_a_fresh_process():
    here = state_sha256(dict(KroneckerProjection(12345, 321, seed=77).named_buffers()))
    proc = subprocess.run([sys.executable, "-c", _REGEN_SCRIPT], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == here
    assert here != state_sha256(dict(KroneckerProjection(12345, 321, seed=78).named_buffers()))


@pytest.mark.parametrize("kwargs,flag", [({"projection": "dense"}, "--subspace-projection"),
                                         ({"params": "some"}, "--subspace-params"), ({"dim": 0}, "--subspace")])
def test_bad_options_name_the_flag(kwargs, flag):
    args = {"dim": 3, "seed": 0} | kwargs
    with pytest.raises(TokenboundError) as e:
        SubspaceWrapper(_net(), **args)
    assert e.value.cli_message().startswith(f"{flag}: ")
