"""Post-training quantization: Hadamard rotations, group quantizers, GPTQ, and the PTQ CompressedModel."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard as scipy_hadamard

import tokenbound
from tokenbound.artifacts import sha256_bytes
from tokenbound.coding import gptq, hadamard
from tokenbound.coding.ptq import ptq_params
from tokenbound.compress.ptq import compress_pretrained
from tokenbound.models.decoders import decode_state, load_compressed
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from test_archive import fresh_process_shas

V = 97


# -- rotations -------------------------------------------------------------------------------------------------
def test_block_hadamard_is_the_orthogonal_sylvester_matrix():
    n = 24  # 8 · 3: three blocks of H_8
    signs = hadamard.random_signs(n, seed=3, tag="t")
    q = hadamard.rotate(np.eye(n), 0, signs)  # columns of Q
    H8 = scipy_hadamard(8) / np.sqrt(8)
    expected = np.kron(np.eye(3), H8) @ np.diag(signs)
    assert np.allclose(q, expected)
    assert np.allclose(q.T @ q, np.eye(n))
    assert hadamard.pow2_block(576) == 64 and hadamard.pow2_block(7) == 1


def test_weight_rotation_round_trip_and_hessian_transform():
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(12, 40)), rng.normal(size=(40, 5))
    s_out, s_in = hadamard.rotation_signs(w.shape, 7, "layer")
    w_rot = hadamard.rotate_weight(w, s_out, s_in)
    assert np.allclose(hadamard.unrotate_weight(w_rot, s_out, s_in), w)
    x_rot = hadamard.rotate(x, 0, s_in)
    assert np.allclose(w_rot @ x_rot, hadamard.rotate(w @ x, 0, s_out))  # W'x' = Q_out W x
    h = x @ x.T
    assert np.allclose(hadamard.rotate_hessian(h, s_in), x_rot @ x_rot.T)
    assert not np.array_equal(s_in, hadamard.rotation_signs(w.shape, 8, "layer")[1])  # the seed matters


# -- quantizers ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,sym", [(2, False), (3, True), (4, False), (8, True)])
def test_rtn_error_is_at_most_half_a_step(bits, sym):
    w = torch.randn(6, 50, generator=torch.Generator().manual_seed(bits))
    spec = gptq.GroupSpec(bits, 16, sym)
    symbols, scales, offsets = gptq.rtn_quantize(w, spec)
    assert symbols.min() >= 0 and symbols.max() < spec.levels and scales.shape == (6, 4)
    assert scales.dtype == np.float16
    deq = gptq.dequantize(symbols, scales, offsets, spec)
    step = scales.astype(np.float32)[:, np.arange(50) // 16]
    # half a step plus the slack from rounding the grid's offset/scale to fp16
    assert (np.abs(deq - w.numpy()) <= step / 2 + 2e-3 * np.abs(w.numpy()).max()).all()


def test_gptq_beats_rtn_on_its_objective():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(32, 32, generator=g)
    x = torch.randn(2000, 32, generator=g) @ mix  # strongly correlated inputs
    h = (2 / x.shape[0]) * (x.T @ x)
    w = torch.randn(16, 32, generator=g)
    spec = gptq.GroupSpec(3, 8)
    rtn = gptq.dequantize(*gptq.rtn_quantize(w, spec), spec)
    opt = gptq.dequantize(*gptq.gptq_quantize(w, h.double(), spec, damp=0.01, blocksize=16), spec)
    e_rtn = gptq.hessian_error(w.numpy(), rtn, h.numpy())
    e_gptq = gptq.hessian_error(w.numpy(), opt, h.numpy())
    assert e_gptq < 0.8 * e_rtn


def test_param_validation():
    assert ptq_params({"bits": 2})["group"] == 64
    for bad, msg in [({"bits": 5}, "bits"), ({"algo": "awq"}, "algo"), ({"foo": 1}, "unknown"),
                     ({"hadamard": 2}, "hadamard"), ({"scale": 8}, "scale"), ({"group": 0}, "group")]:
        with pytest.raises(TokenboundError, match=msg):
            ptq_params(bad)


# -- the PTQ CompressedModel ---------------------------------------------------------------------------------------
def _save_tiny(kind, path, tie=False):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        m = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                         max_position_embeddings=64, tie_word_embeddings=tie))
    else:
        m = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=V, n_positions=64,
                                       bos_token_id=0, eos_token_id=0))
    m.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ptq")
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, V, 2000)
    tokens[::37] = 0
    tokens[-1] = 0
    offsets = np.concatenate([[0], np.flatnonzero(tokens == 0)[:-1] + 1])
    write_store(root / "store", tokens, offsets, V, 0)
    write_store(root / "store" / "val", tokens[:600], offsets[offsets < 600], V, 0)
    return {"llama": _save_tiny("llama", root / "llama"), "gpt2": _save_tiny("gpt2", root / "gpt2"),
            "tied": _save_tiny("llama", root / "tied", tie=True), "store": root / "store", "root": root}


FAST = {"calib": 4, "ctx": 32, "eval": 2}


def test_bits16_reduces_to_the_original_up_to_fp16(tiny, tmp_path):
    man = compress_pretrained(tiny["llama"], tmp_path / "c", {"bits": 16, "eval": 0})
    original = tokenbound.load(tiny["llama"]).module.state_dict()
    _, state, _ = decode_state(tmp_path / "c")
    assert set(state) == set(original)
    for name, t in original.items():
        assert torch.equal(state[name], t.half().float()), name
    # the rebuilt architecture (rotary buffers, norms, tying) computes what the original does
    ids = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(1))
    reference = tokenbound.load(tiny["llama"])
    reference.module.load_state_dict({k: v.half().float() for k, v in original.items()})
    assert torch.allclose(load_compressed(tmp_path / "c").log_probs(ids), reference.log_probs(ids), atol=1e-5)
    assert man["bits_per_quantized_param"] == 16.0
    assert man["message_bits"] > 16 * man["num_coded_params"]  # plus header, prefixes


CASES = {
    "llama-rtn4": ("llama", {"bits": 4}),
    "llama-gptq2-hadamard": ("llama", {"bits": 2, "algo": "gptq", "hadamard": 1, **FAST}),
    "gpt2-gptq3-sym-rows": ("gpt2", {"bits": 3, "algo": "gptq", "sym": 1, "group": -1, **FAST}),
    "tied-gptq8-hadamard-fp32scales": ("tied", {"bits": 8, "algo": "gptq", "hadamard": 1, "scale": 32, **FAST}),
}


@pytest.fixture(scope="module")
def coded(tiny):
    out = {}
    for case, (kind, params) in CASES.items():
        path = tiny["root"] / f"coded-{case}"
        out[case] = (path, compress_pretrained(tiny[kind], path, params, data=tiny["store"], seed=5))
    return out


def test_round_trip_in_a_fresh_process(coded):
    paths = [path for path, _ in coded.values()]
    assert fresh_process_shas(*paths) == [man["decoded_sha256"] for _, man in coded.values()]


@pytest.mark.parametrize("case", list(CASES))
def test_coded_model_accounting_and_weights(tiny, coded, case):
    path, man = coded[case]
    kind = CASES[case][0]
    bd = man["message_breakdown"]
    files = {f: (path / f).stat().st_size for f in ("header.json", "side.bin", "payload.bin")}
    assert bd["payload_bits"] == 8 * files["payload.bin"]
    assert bd["header_bits"] == 8 * (files["header.json"] + files["side.bin"])
    assert man["message_bits"] == bd["payload_bits"] + bd["header_bits"] + bd["prefix_bits"] + bd["grid_bits"]
    held = man["heldout_bits_per_token"]
    assert held["tokens"] > 0 and abs(held["after"] - held["before"]) < 0.5  # a random model stays near uniform
    model = load_compressed(path)
    if kind == "tied":
        assert model.module.lm_head.weight.data_ptr() == model.module.model.embed_tokens.weight.data_ptr()
    # the coded weights are near the originals, but not equal (they were quantized)
    orig = tokenbound.load(tiny[kind]).module.state_dict()
    name = next(n for n in orig if n.endswith("mlp.c_fc.weight") or n.endswith("mlp.up_proj.weight"))
    err = (model.module.state_dict()[name] - orig[name]).abs().max().item()
    assert 0 < err < orig[name].abs().max().item()


def test_more_bits_cost_more_and_err_less(tiny, tmp_path):
    lengths, errors = [], []
    orig = tokenbound.load(tiny["llama"]).module.state_dict()
    for bits in (2, 3, 4, 8):
        man = compress_pretrained(tiny["llama"], tmp_path / f"b{bits}", {"bits": bits, "eval": 0})
        _, state, _ = decode_state(tmp_path / f"b{bits}")
        lengths.append(man["message_bits"])
        errors.append(sum(((state[n] - orig[n]) ** 2).sum().item() for n in orig))
    assert lengths == sorted(lengths) and errors == sorted(errors, reverse=True)


def test_corrupted_bitstream_is_a_clean_error(tiny, tmp_path):
    compress_pretrained(tiny["llama"], tmp_path / "c", {"bits": 4, "eval": 0})
    f = tmp_path / "c" / "payload.bin"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.raises(TokenboundError, match="payload.bin"):
        load_compressed(tmp_path / "c")
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    man["files"]["payload.bin"] = sha256_bytes(bytes(data))  # forge the hash: the entropy coder's CRC catches it
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TokenboundError, match="corrupted|CRC|decode|match"):
        load_compressed(tmp_path / "c")


def test_input_errors(tiny, tmp_path):
    with pytest.raises(TokenboundError) as e:
        compress_pretrained(tiny["llama"], tmp_path / "c", {"bits": 4, "algo": "gptq"})
    assert e.value.cli_message().startswith("--data")
    big = tmp_path / "big"
    write_store(big, np.array([5, 200, 0]), np.array([0]), 300, 0)
    with pytest.raises(TokenboundError, match="vocabulary 300"):
        compress_pretrained(tiny["llama"], tmp_path / "c", {"bits": 4}, data=big)
    with pytest.raises(TokenboundError, match="is not a model"):
        compress_pretrained(tiny["store"], tmp_path / "c", {"bits": 4})
    assert not (tmp_path / "c").exists()
