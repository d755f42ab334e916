"""Structured linear layers: each equals its explicit dense matrix (forward and gradients), parameter counts
match the closed forms, seeded parts regenerate bit-exactly in a fresh process, and the spec grammar."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from tokenbound.coding.hashing import state_sha256
from tokenbound.errors import TokenboundError
from tokenbound.models.kronecker import near_sqrt_split
from tokenbound.models.layers import (coded_parameters, count_coded_params, make_linear, parse_layer_spec,
                                      seeded_buffers)

# (kind, in, out): square and rectangular, with and without explicit factor shapes.
CASES = [
    ("dense", 12, 20), ("lowrank:3", 12, 20), ("lora:4", 12, 20), ("lora:2:0.5", 20, 12),
    ("kron", 12, 20), ("kron:4x3", 12, 20), ("kron", 7, 5), ("monarch:2", 16, 16), ("monarch:4", 64, 64),
    ("monarch:4", 32, 96), ("monarch:2", 24, 8), ("monarch", 48, 48), ("kron:1x4", 16, 16),
]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter (LoRA's zero B included) generic values, so no term can vanish by accident."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("kind,n_in,n_out", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_layer_equals_its_dense_matrix_forward_and_gradients(kind, n_in, n_out, bias):
    layer = make_linear(kind, n_in, n_out, bias, seed=7).double()
    _randomise(layer, 1)
    twin = copy.deepcopy(layer)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, n_in, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 5, n_out, generator=gen, dtype=torch.float64)  # a generic upstream gradient
    # A non-contiguous input with the same values (layers must not assume a layout).
    x1 = x.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_(True)
    x2 = x.clone().requires_grad_(True)

    y1 = layer(x1)
    y2 = x2 @ twin.dense_weight().T + (twin.bias if bias else 0.0)
    assert y1.shape == (3, 5, n_out)
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)

    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-10)
    twin_params = dict(twin.named_parameters())
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, twin_params[name].grad, rtol=1e-10, atol=1e-10, msg=name)


def _closed_form_coded(kind: str, n_in: int, n_out: int) -> int:
    name, *args = kind.split(":")
    if name == "dense":
        return n_in * n_out
    if name in ("lowrank", "lora"):
        return int(args[0]) * (n_in + n_out)
    if name == "kron":
        o1, i1 = (map(int, args[0].split("x")) if args
                  else (near_sqrt_split(n_out)[0], near_sqrt_split(n_in)[0]))
        return o1 * i1 + (n_out // o1) * (n_in // i1)
    b = int(args[0]) if args else 4
    return min(n_in, n_out) // b * (n_in + n_out)  # q·(in + out), q = min(in, out)/b


@pytest.mark.parametrize("kind,n_in,n_out", CASES)
def test_coded_parameter_counts_match_closed_forms(kind, n_in, n_out):
    for bias in (False, True):
        layer = make_linear(kind, n_in, n_out, bias, seed=0)
        expected = _closed_form_coded(kind, n_in, n_out) + (n_out if bias else 0)
        assert layer.num_coded_params == expected == count_coded_params(layer)
        seeded = sum(b.numel() for b in seeded_buffers(layer).values())
        assert seeded == (n_in * n_out if kind.startswith("lora") else 0)


@pytest.mark.parametrize("n,b", [(64, 4), (256, 4), (1024, 4), (64, 8), (36, 3)])
def test_square_monarch_has_two_n_squared_over_b_parameters(n, b):
    assert make_linear(f"monarch:{b}", n, n, False, 0).num_coded_params == 2 * n * n // b


def test_monarch_connects_every_input_to_every_output():
    """The permutation between the two block-diagonal factors is what makes Monarch dense-expressive."""
    for n_in, n_out, b in [(64, 64, 4), (32, 96, 4), (24, 8, 2)]:
        layer = make_linear(f"monarch:{b}", n_in, n_out, False, 0)
        assert (layer.dense_weight() != 0).all()


def test_coded_are_exactly_trainable_parameters_and_seeded_are_non_persistent_buffers():
    layer = make_linear("lora:4", 16, 8, True, seed=3)
    assert set(coded_parameters(layer)) == {"A", "B", "bias"}
    assert set(seeded_buffers(layer)) == {"base_weight"}
    assert not layer.base_weight.requires_grad
    assert set(layer.state_dict()) == {"A", "B", "bias"}  # the frozen base is never saved
    torch.testing.assert_close(layer.dense_weight().detach(), layer.base_weight)  # B = 0 at init


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = make_linear("lora:4", 16, 8, False, seed=3)
    b = make_linear("lora:4", 16, 8, False, seed=3)
    c = make_linear("lora:4", 16, 8, False, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.base_weight, b.base_weight) and torch.equal(a.A, b.A)
    assert not torch.equal(a.base_weight, c.base_weight)


_REGEN_KINDS = ["dense", "lowrank:4", "lora:8:2", "kron", "kron:8x4", "monarch:4"]
_REGEN_SCRIPT = """
import json, sys, torch
from tokenbound.coding.hashing import state_sha256
from tokenbound.models.layers import make_linear
out = {}
for kind in json.loads(sys.argv[1]):
    layer = make_linear(kind, 64, 128, True, seed=1234)
    tensors = dict(layer.named_parameters()) | dict(layer.named_buffers())
    out[kind] = state_sha256(tensors)
print(json.dumps(out))
"""


def test_seeded_tensors_regenerate_identically_in_a_fresh_process():
    here = {}
    for kind in _REGEN_KINDS:
        layer = make_linear(kind, 64, 128, True, seed=1234)
        here[kind] = state_sha256(dict(layer.named_parameters()) | dict(layer.named_buffers()))
    proc = subprocess.run([sys.executable, "-c", _REGEN_SCRIPT, json.dumps(_REGEN_KINDS)],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == here
    assert len(set(here.values())) == len(here)


@pytest.mark.parametrize("kind", ["dense", "lowrank:8", "lora:8", "kron", "monarch:4"])
def test_initial_dense_matrix_has_gpt_scale(kind):
    w = make_linear(kind, 256, 256, False, seed=5).dense_weight().detach()
    assert 0.018 < w.std().item() < 0.022
    assert abs(w.mean().item()) < 0.002


def test_near_sqrt_split():
    assert near_sqrt_split(768) == (24, 32)
    assert near_sqrt_split(1024) == (32, 32)
    assert near_sqrt_split(3072) == (48, 64)
    assert near_sqrt_split(13) == (1, 13)


def test_parse_layer_spec():
    assert parse_layer_spec("attn=monarch:4,mlp=kron,head=dense") == {"attn": "monarch:4", "mlp": "kron",
                                                                      "head": "dense"}
    assert parse_layer_spec("dense") == {"attn": "dense", "mlp": "dense", "head": "dense"}
    assert parse_layer_spec("mlp=lora:8") == {"attn": "dense", "mlp": "lora:8", "head": "dense"}
    assert parse_layer_spec("lora:8:2, head=dense") == {"attn": "lora:8:2", "mlp": "lora:8:2", "head": "dense"}
    assert parse_layer_spec("attn=kron:32x24,mlp=lowrank:16") == {"attn": "kron:32x24", "mlp": "lowrank:16",
                                                                 "head": "dense"}


@pytest.mark.parametrize("spec", ["ffn=dense", "attn=butterfly", "attn=lora", "attn=lora:0", "attn=lora:4:x",
                                  "attn=monarch:4:2", "attn=kron:4", "attn=dense:3", "attn=dense,attn=kron",
                                  "", "dense,,mlp=kron", "lora:4,kron", "attn=lowrank:-1"])
def test_bad_layer_specs_name_the_flag(spec):
    with pytest.raises(TokenboundError) as e:
        parse_layer_spec(spec)
    assert e.value.cli_message().startswith("--layers: ")


@pytest.mark.parametrize("kind,n_in,n_out", [("monarch:4", 30, 32), ("monarch:4", 32, 32 * 3 + 2),
                                             ("monarch:4", 8, 8), ("kron:3x2", 8, 8)])
def test_impossible_shapes_are_clear_errors(kind, n_in, n_out):
    with pytest.raises(TokenboundError) as e:
        make_linear(kind, n_in, n_out, False, 0)
    assert e.value.cli_message().startswith("--layers: ")


@pytest.mark.parametrize("kind", ["dense", "lowrank:4", "lora:4", "kron", "monarch:4"])
def test_layers_run_forward_and_backward_under_bfloat16_autocast(kind):
    layer = make_linear(kind, 32, 64, True, seed=0)
    x = torch.randn(2, 3, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    for name, p in coded_parameters(layer).items():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
    reference = x.detach() @ layer.dense_weight().detach().T + layer.bias.detach()
    torch.testing.assert_close(y.float(), reference, rtol=0.05, atol=0.05)
