"""The archive method: smallest of four compressors, canonical tar, verified decode, clean corruption errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import tokenbound
from tokenbound.artifacts import sha256_bytes
from tokenbound.coding import archive
from tokenbound.coding.hashing import state_sha256
from tokenbound.compress.archive import compress_archive
from tokenbound.errors import TokenboundError
from tokenbound.models.decoders import load_compressed, model_state

# Decode in a fresh interpreter and print the decoded state's hash (what `tokenbound.load` would evaluate).
FRESH_DECODE = ("import sys; from tokenbound.models.decoders import decode_state; "
                "from tokenbound.coding.hashing import state_sha256; "
                "[print('SHA', state_sha256(decode_state(p)[1])) for p in sys.argv[1:]]")


def fresh_process_shas(*paths) -> list[str]:
    """state_sha256 of each CompressedModel decoded in ONE fresh interpreter (imports are the slow part)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", FRESH_DECODE, *map(str, paths)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return [line.split()[1] for line in res.stdout.splitlines() if line.startswith("SHA ")]


def fresh_process_sha(path) -> str:
    return fresh_process_shas(path)[0]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("hf") / "tiny-llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=97)).save_pretrained(d, safe_serialization=True)
    return d


@pytest.fixture(scope="module")
def archived(tiny_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("arch") / "c"
    return out, compress_archive(tiny_hf, out)


def test_keeps_the_smallest_codec_and_counts_every_bit(archived):
    out, man = archived
    sizes = man["candidate_bytes"]
    assert set(sizes) == set(archive.CODECS) and man["codec"] == min(sizes, key=sizes.get)
    payload = (out / "payload.bin").read_bytes()
    header = (out / "header.json").read_bytes()
    assert len(payload) == sizes[man["codec"]]
    bd = man["message_breakdown"]
    assert bd["payload_bits"] == 8 * len(payload) and bd["header_bits"] == 8 * len(header)
    assert bd["grid_bits"] == 2.0  # log2 of 4 compressors
    assert bd["prefix_bits"] == sum(2 * (n.bit_length() - 1) + 1 for n in (8 * len(header), 8 * len(payload)))
    assert man["message_bits"] == bd["payload_bits"] + bd["header_bits"] + bd["prefix_bits"] + 2.0
    assert man["source"]["type"] == "hf" and man["decoder"] == "archive" and man["method"] == "archive"
    assert man["raw_bytes"] > len(payload)  # the fp32 checkpoint compresses


def test_round_trip_in_a_fresh_process(archived, tiny_hf):
    out, man = archived
    original = state_sha256(model_state(tokenbound.load(tiny_hf)))
    assert man["decoded_sha256"] == original
    assert fresh_process_sha(out) == original
    model = tokenbound.load(out)
    ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.log_probs(ids), tokenbound.load(tiny_hf).log_probs(ids))


def test_canonical_tar_ignores_timestamps(tiny_hf, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_hf, copy)
    for f in copy.iterdir():
        os.utime(f, (1_000_000, 1_000_000))
    assert archive.canonical_tar(copy) == archive.canonical_tar(tiny_hf)


def test_corrupted_payload_is_a_clean_error(archived, tmp_path):
    import shutil

    src, _ = archived
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    data = bytearray((bad / "payload.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "payload.bin").write_bytes(bytes(data))
    with pytest.raises(TokenboundError, match="payload.bin"):
        load_compressed(bad)
    # Even with the manifest's hash forged to match, the decoder refuses the corrupted stream cleanly.
    man = json.loads((bad / "manifest.json").read_text())
    man["files"]["payload.bin"] = sha256_bytes(bytes(data))
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TokenboundError, match="payload.bin"):
        load_compressed(bad)


def test_restricted_codecs_and_bad_sources(tiny_hf, tmp_path):
    man = compress_archive(tiny_hf, tmp_path / "gz", codecs=("gzip",))
    assert man["codec"] == "gzip" and man["message_breakdown"]["grid_bits"] == 0.0
    assert man["method"] == "archive:codecs=gzip"
    with pytest.raises(TokenboundError) as e:
        compress_archive(tiny_hf, tmp_path / "x", codecs=("rar",))
    assert e.value.cli_message().startswith("--method archive")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TokenboundError, match="notes.txt"):
        compress_archive(tmp_path / "notes.txt", tmp_path / "y")
    with pytest.raises(TokenboundError, match="already exists"):
        compress_archive(tiny_hf, tmp_path / "gz")


@pytest.mark.slow
def test_smollm2_gguf_archive_round_trip(tmp_path):
    """The message length of a shipped GGUF is its archive; load evaluates its dequantized weights."""
    from tokenbound.assets import smollm2_gguf

    torch.set_num_threads(1)
    gguf = smollm2_gguf()
    # zstd and gzip only: xz/brotli at their strongest settings take ~10 CPU-minutes on 98 MB (the full codec
    # race is tested on small inputs above); the grid bits follow the number of codecs tried.
    man = compress_archive(gguf, tmp_path / "c", codecs=("zstd", "gzip"))
    assert man["message_breakdown"]["grid_bits"] == 1.0
    assert man["source"]["type"] == "gguf" and man["raw_bytes"] == gguf.stat().st_size
    assert man["message_bits"] < 8 * gguf.stat().st_size + 1000
    direct = state_sha256(model_state(tokenbound.load(gguf)))
    assert man["decoded_sha256"] == direct
    assert fresh_process_sha(tmp_path / "c") == direct
