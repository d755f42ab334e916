"""`tokenbound compress` end to end on `tiny` runs: round trips through a fresh process, corruption, manifests."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tokenbound
from tokenbound.cli import main
from tokenbound.coding.quantize import PAYLOAD
from tokenbound.models.decoders import decode_quant as decode_compressed
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.models.gpt import GPTLanguageModel, coded_state_dict, load_run_module, parameter_counts

METHODS = ["quant:levels=11", "quant:levels=5,scope=global,stream=joint,codebook=uniform", "quant:grid=3/5",
           "qat:levels=5,steps=8", "archive"]


def _markov_store(path, seed=0, vocab=48, docs=150):
    """Documents from a sparse random Markov chain, with a held-out val/ split."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(vocab, 0.1), size=vocab)

    def docs_of(k):
        stream, offsets = [], []
        for _ in range(k):
            doc = [int(rng.integers(1, vocab))]
            for _ in range(int(rng.integers(20, 100)) - 1):
                doc.append(max(1, int(rng.choice(vocab, p=trans[doc[-1]]))))
            offsets.append(len(stream))
            stream += doc + [0]
        return np.array(stream), np.array(offsets)

    store = write_store(path, *docs_of(docs), vocab, 0)
    write_store(path / "val", *docs_of(30), vocab, 0)
    return store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compress")
    _markov_store(root / "store")
    train(root / "store", root / "dense", preset="tiny", seed=0, progress=False)
    train(root / "store", root / "lora", preset="tiny", layers="lora:4", seed=1, steps=20, progress=False)
    return root


@pytest.fixture(scope="module")
def compressed(runs):
    """Every method applied to the dense run through the CLI: {method: out dir}."""
    outs = {}
    for i, spec in enumerate(METHODS):
        out = runs / f"c{i}"
        assert main(["compress", "--run", str(runs / "dense"), "--method", spec, "--out", str(out)]) == 0
        outs[spec] = out
    return outs


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny random Llama saved as a Hugging Face directory, compressed with ptq and archive through the CLI."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=48, max_position_embeddings=64)
                     ).save_pretrained(root / "llama", safe_serialization=True)
    outs = {}
    for i, spec in enumerate(["ptq:bits=4,group=16,algo=rtn", "archive"]):
        out = root / f"p{i}"
        assert main(["compress", "--hf", str(root / "llama"), "--method", spec, "--out", str(out)]) == 0
        outs[spec] = out
    return outs


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _fresh_process_hashes(dirs: list[Path]) -> dict[str, str]:
    """state_sha256 of each CompressedModel as decoded by a new Python process (nothing shared in memory)."""
    script = ("import sys, json\n"
              "from tokenbound.models.decoders import decode_state\n"
              "from tokenbound.coding.hashing import state_sha256\n"
              "print(json.dumps({p: state_sha256(decode_state(p)[1]) for p in sys.argv[1:]}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script, *map(str, dirs)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_run_method_round_trips_through_a_fresh_process(compressed):
    fresh = _fresh_process_hashes(list(compressed.values()))
    for spec, out in compressed.items():
        man = _manifest(out)
        assert fresh[str(out)] == man["decoded_sha256"], spec
        assert man["method"] == spec and man["source"]["type"] == "run"


@pytest.mark.slow  # imports transformers in two processes (~30 s CPU on this machine)
def test_pretrained_methods_round_trip_through_a_fresh_process(pretrained):
    fresh = _fresh_process_hashes(list(pretrained.values()))
    for spec, out in pretrained.items():
        man = _manifest(out)
        assert fresh[str(out)] == man["decoded_sha256"], spec
        assert man["source"]["type"] == "hf" and man["decoder"] == spec.split(":")[0]


@pytest.mark.parametrize("spec", [m for m in METHODS if m != "archive"])
def test_manifest_itemises_the_message_length(compressed, runs, spec):
    man = _manifest(compressed[spec])
    bd = man["message_breakdown"]
    assert math.isclose(man["message_bits"], bd["payload_bits"] + bd["header_bits"] + bd["prefix_bits"]
                        + bd["grid_bits"])
    size = (compressed[spec] / PAYLOAD).stat().st_size
    assert bd["payload_bits"] + bd["header_bits"] == 8 * size          # every byte of the bitstream is counted
    assert bd["prefix_bits"] == 2 * int(math.log2(size)) + 1            # Elias gamma of the byte length
    module, _ = load_run_module(runs / "dense")
    coded = coded_state_dict(module)
    assert set(bd["tensors"]) == set(coded)                            # each coded tensor's bits are listed
    assert man["num_coded_params"] == sum(t.numel() for t in coded.values())
    assert math.isclose(man["bits_per_coded_param"], man["message_bits"] / man["num_coded_params"])
    expected_grid = math.log2(2) if "grid" in spec else 0.0
    assert bd["grid_bits"] == pytest.approx(expected_grid)
    if "grid" in spec:
        assert man["grid"]["chosen"] in (3, 5) and man["quant"]["levels"] == man["grid"]["chosen"]


def test_decoded_model_evaluates_exactly_the_quantized_weights(compressed, runs):
    out = compressed["quant:levels=11"]
    model = tokenbound.load(out)
    module, cfg = load_run_module(runs / "dense")
    _, state = decode_compressed(out, _manifest(out))
    with torch.no_grad():
        for n, p in module.named_parameters():
            if p.requires_grad:
                assert not torch.equal(p, state[n])          # quantization changed the weights ...
                p.copy_(state[n])
    ids = torch.randint(0, cfg.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.log_probs(ids), GPTLanguageModel(module, cfg).log_probs(ids))   # ... to these


def test_frozen_seeded_tensors_are_not_coded(runs, tmp_path):
    out = tmp_path / "lora11"
    assert main(["compress", "--run", str(runs / "lora"), "--method", "quant:levels=11", "--out", str(out)]) == 0
    man = _manifest(out)
    module, _ = load_run_module(runs / "lora")
    counts = parameter_counts(module)
    assert counts["frozen"] > counts["coded"] > 0
    coded = coded_state_dict(module)
    assert set(man["message_breakdown"]["tensors"]) == set(coded)
    assert not any("base_weight" in n for n in man["message_breakdown"]["tensors"])
    assert man["num_coded_params"] == counts["coded"] and man["frozen_params"] == counts["frozen"]
    # far fewer bits than even one bit per frozen scalar: the frozen base travels as a seed in the header
    assert man["message_bits"] < counts["frozen"]
    assert man["model_config"]["seed"] == 1 and man["model_config"]["layers"] == "lora:4"
    model = tokenbound.load(out)                # the frozen base regenerates from the seed: sha256 verified
    assert model.describe()["frozen_params"] == counts["frozen"]


def test_flipped_byte_is_reported_never_silently_decoded(compressed, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(compressed["quant:levels=11"], bad)
    data = bytearray((bad / PAYLOAD).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / PAYLOAD).write_bytes(bytes(data))
    with pytest.raises(TokenboundError, match="payload.bin"):
        tokenbound.load(bad)                    # caught by the manifest's sha256
    with pytest.raises(TokenboundError, match="CRC32|corrupt"):
        decode_compressed(bad, _manifest(bad))  # and, without the manifest check, by the stream's CRC32


def test_cli_prints_summary_and_held_out_bits(runs, tmp_path, capsys):
    out = tmp_path / "q"
    code = main(["compress", "--run", str(runs / "dense"), "--method", "quant:levels=7", "--out", str(out),
                 "--eval-data", str(runs / "store"), "--eval-tokens", "512"])
    assert code == 0
    text = capsys.readouterr().out
    man = _manifest(out)
    assert f"{man['message_bits']:.0f} bits" in text and "bits per coded parameter" in text
    assert "held-out bits per token" in text and str(runs / "store" / "val") in text


@pytest.mark.parametrize("argv, needle", [
    (["--method", "quant:levels=4"], "levels must be an odd"),
    (["--method", "quant:levels=11,colour=red"], "unknown parameter"),
    (["--method", "quant:levels=5,grid=3/5"], "not both"),
    (["--method", "lattice:levels=3"], "unknown method"),
    (["--method", "ptq:bits=4"], "pretrained"),
    (["--method", "qat:levels=5,lr=fast"], "lr must be a number"),
])
def test_bad_input_is_a_one_line_error_exit_2(runs, tmp_path, capsys, argv, needle):
    code = main(["compress", "--run", str(runs / "dense"), "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err and "--method" in err
    assert not (tmp_path / "x").exists()


def test_quant_needs_a_run_and_out_is_not_overwritten(runs, compressed, tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    assert main(["compress", "--gguf", str(fake), "--method", "quant:levels=11", "--out", str(tmp_path / "y")]) == 2
    assert "--run" in capsys.readouterr().err
    out = compressed["quant:levels=11"]
    before = (out / PAYLOAD).read_bytes()
    assert main(["compress", "--run", str(runs / "dense"), "--method", "quant:levels=3", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / PAYLOAD).read_bytes() == before
