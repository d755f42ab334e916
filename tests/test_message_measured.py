"""The message length a certificate charges is measured from the bitstream files, never taken from a manifest."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from tokenbound.bounds.certificate import recompute
from tokenbound.bounds.prefix import choice_bits, elias_gamma_bits
from tokenbound.cli import main
from tokenbound.coding import archive
from tokenbound.coding.compressed import measured_message_bits, read_compressed_manifest
from tokenbound.compress.archive import compress_archive
from tokenbound.compress.ptq import compress_pretrained
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.bound import bound, load_stats, message_length
from tokenbound.evaluate.verify import verify
from tokenbound.models import markov_code
from tokenbound.models.markov_fit import fit_store

PARTS = ("payload_bits", "header_bits", "prefix_bits", "grid_bits")


@pytest.fixture(scope="module")
def root(tmp_path_factory, periodic_store):
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("measured")
    periodic_store(d / "store")
    train(d / "store", d / "run", preset="tiny", seed=0, steps=5, progress=False)
    assert main(["compress", "--run", str(d / "run"), "--method", "quant:grid=3/5", "--out", str(d / "cm")]) == 0
    fit_store(d / "store", 2, d / "markov")
    bound(d / "cm", d / "store", d / "cm.json", samples=60, progress=False)
    bound(d / "markov", d / "store", d / "mk.json", samples=60, progress=False)
    return d


def _forge_manifest(model_dir, bits=10):
    """Edit a manifest to claim a `bits`-bit message with a breakdown that adds up (the bitstream is untouched)."""
    man_path = model_dir / "manifest.json"
    man = json.loads(man_path.read_text())
    man["message_bits"] = bits
    if "message_breakdown" in man:
        man["message_breakdown"].update(payload_bits=bits - 6, header_bits=3, prefix_bits=3, grid_bits=0)
    else:
        man["payload_bits"] = bits - 3
        man["message_bits_breakdown"] = {"payload_bits": bits - 3, "prefix_bits": 3}
    man_path.write_text(json.dumps(man))


def _forge_certificate(cert_path, bits=10):
    """The matching forged certificate: message length edited, every number recomputed from the same stats."""
    cert = json.loads(cert_path.read_text())
    cert["inputs"]["message_bits"] = bits
    new = recompute(cert, load_stats(cert, cert_path)).to_json()
    cert_path.write_text(json.dumps(new))
    return new


def test_measured_equals_manifest_for_an_honest_quant_model(root):
    bits, bd = measured_message_bits(root / "cm")
    man = read_compressed_manifest(root / "cm")
    size = (root / "cm" / "payload.bin").stat().st_size
    assert bits == man["message_bits"] and bd["payload_bits"] + bd["header_bits"] == 8 * size
    assert bd["prefix_bits"] == elias_gamma_bits(size) and bd["grid_bits"] == choice_bits(2)
    assert json.loads((root / "cm.json").read_text())["inputs"]["message_bits"] == bits


def test_forged_compressed_manifest_is_refused_by_bound_and_verify(root, tmp_path):
    honest = json.loads((root / "cm.json").read_text())
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    _forge_manifest(copy / "cm")
    with pytest.raises(TokenboundError, match=r"manifest\.json: .*disagrees with the .* measured from payload\.bin"):
        message_length(copy / "cm", "tokenbound.compressed_model")
    rc = main(["bound", "--compressed", str(copy / "cm"), "--data", str(copy / "store"), "--out",
               str(copy / "new.json"), "--samples", "60"])
    assert rc == 2 and not (copy / "new.json").exists() and not (copy / "new.stats").exists()
    # the certificate forged to match (message 10 bits, bounds recomputed) was accepted before
    forged = _forge_certificate(copy / "cm.json")
    assert forged["terms"]["complexity_bits"] < honest["terms"]["complexity_bits"]
    problems = verify(copy / "cm.json", rescore=0)
    assert any("manifest.json" in p and "measured from payload.bin" in p for p in problems), problems
    assert main(["verify", str(copy / "cm.json"), "--rescore", "0"]) == 1


def test_certificate_that_undercharges_an_honest_model_fails_verify(root, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    _forge_certificate(copy / "cm.json", bits=1000)
    assert any("measured from" in p and "differs from the certified 1000" in p
               for p in verify(copy / "cm.json", rescore=0))


def test_forged_markov_manifest_is_refused_by_bound_and_verify(root, tmp_path, capsys):
    payload = 8 * (root / "markov" / markov_code.BITSTREAM).stat().st_size
    assert markov_code.measured_message_bits(root / "markov") == (
        payload + elias_gamma_bits(payload), {"payload_bits": payload, "prefix_bits": elias_gamma_bits(payload)})
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    _forge_manifest(copy / "markov")
    with pytest.raises(TokenboundError, match=r"manifest\.json: message_bits 10 disagrees .* from model\.tbm"):
        markov_code.measured_message_bits(copy / "markov")
    capsys.readouterr()
    rc = main(["bound", "--markov", str(copy / "markov"), "--data", str(copy / "store"), "--out",
               str(copy / "new.json"), "--samples", "60"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "manifest.json" in err and len(err.splitlines()) == 1 and not (copy / "new.json").exists()
    _forge_certificate(copy / "mk.json")
    problems = verify(copy / "mk.json", rescore=0)
    assert any("model.tbm" in p for p in problems), problems


def test_markov_certificate_with_a_smaller_message_fails_verify(root, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    assert verify(copy / "mk.json", rescore=0) == []
    _forge_certificate(copy / "mk.json")  # manifest honest, certificate claims 10 bits
    assert any("differs from the certified 10" in p for p in verify(copy / "mk.json", rescore=0))


def test_truncated_or_padded_bitstream_is_measured_not_trusted(root, tmp_path):
    import hashlib

    copy = tmp_path / "cm"
    shutil.copytree(root / "cm", copy)
    payload = copy / "payload.bin"
    payload.write_bytes(payload.read_bytes() + b"\0" * 8)  # hidden bytes after the last stream
    man = json.loads((copy / "manifest.json").read_text())
    man["files"]["payload.bin"] = hashlib.sha256(payload.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TokenboundError, match="trailing bytes"):
        measured_message_bits(copy)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("hf") / "tiny-llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, vocab_size=24)).save_pretrained(d, safe_serialization=True)
    return d


def test_archive_and_ptq_are_measured_from_their_files(tiny_hf, tmp_path):
    man = compress_archive(tiny_hf, tmp_path / "a", codecs=("gzip", "zstd"))
    bits, bd = measured_message_bits(tmp_path / "a")
    hb, pb = (8 * (tmp_path / "a" / f).stat().st_size for f in ("header.json", "payload.bin"))
    assert bits == man["message_bits"] and (bd["header_bits"], bd["payload_bits"]) == (hb, pb)
    assert bd["grid_bits"] == 1.0 and bd["prefix_bits"] == elias_gamma_bits(hb) + elias_gamma_bits(pb)
    ptq = compress_pretrained(tiny_hf, tmp_path / "p", {"bits": 4, "grid": 3, "eval": 0})
    bits, bd = measured_message_bits(tmp_path / "p")
    sizes = [8 * (tmp_path / "p" / f).stat().st_size for f in ("header.json", "side.bin", "payload.bin")]
    assert bits == ptq["message_bits"] and bd["header_bits"] == sizes[0] + sizes[1] and bd["payload_bits"] == sizes[2]
    assert bd["grid_bits"] == choice_bits(3)
    for d in (tmp_path / "a", tmp_path / "p"):
        _forge_manifest(d, bits=100)
        with pytest.raises(TokenboundError, match="disagrees with the"):
            measured_message_bits(d)


def test_uncompressed_model_is_charged_its_measured_archive(root):
    msg = message_length(root / "run", "tokenbound.run")
    assert msg.details["measure"] == "archive" and msg.bits == sum(msg.details["breakdown"][k] for k in PARTS)
    assert msg.details["codec"] in archive.CODECS


def test_a_file_as_its_own_code_is_measured_from_its_size(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF" + bytes(1000))
    msg = message_length(f, "gguf", measure="file")
    assert msg.bits == 8 * 1004 + elias_gamma_bits(8 * 1004) and msg.details["measure"] == "file"
    with pytest.raises(TokenboundError, match="not a regular file"):
        message_length(tmp_path, "gguf", measure="file")
