"""The CompressedModel contract: manifest, file hashes, decoder dispatch, decoded-state check, method specs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tokenbound
from tokenbound.artifacts import KIND_COMPRESSED
from tokenbound.coding import compressed
from tokenbound.coding.compressed import DECODER_NAMES, parse_method, read_verified, write_compressed
from tokenbound.coding.hashing import state_sha256
from tokenbound.errors import TokenboundError
from tokenbound.models.base import LanguageModel
from tokenbound.models.decoders import DECODERS, decode_state, load_compressed


class _Unigram(LanguageModel):
    """A model whose next-token distribution ignores the context: softmax of a decoded logit vector."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        self.vocab_size = logits.numel()
        self.max_context = None

    def log_probs(self, ids, segments=None):
        lp = torch.log_softmax(self.logits, -1)
        return lp.expand(ids.shape[0], ids.shape[1], -1).clone()


def _fake_decoder(path, manifest, device):
    raw = read_verified(path, manifest, "payload.bin")
    logits = torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())
    return _Unigram(logits), {"logits": logits}


@pytest.fixture
def fake_decoder(monkeypatch):
    monkeypatch.setattr(compressed, "DECODER_NAMES", DECODER_NAMES + ("fake",))
    monkeypatch.setitem(DECODERS, "fake", _fake_decoder)
    return "fake"


def test_every_format_has_its_decoder():
    """coding/ lists the formats it writes; models/decoders.py decodes exactly those."""
    assert set(DECODERS) == set(DECODER_NAMES)


def _write(out, decoder, logits=np.arange(5, dtype="<f4"), **kw):
    breakdown = {"payload_bits": 8 * logits.nbytes, "header_bits": 10, "prefix_bits": 3, "grid_bits": 1.5,
                 "tensors": {"logits": 8 * logits.nbytes}}
    args = dict(method="fake:levels=3", decoder=decoder, source={"type": "run", "path": "x", "sha256": "0" * 64},
                files={"payload.bin": logits.tobytes()}, breakdown=breakdown,
                decoded_sha256=state_sha256({"logits": torch.from_numpy(logits.copy())}))
    args.update(kw)
    return write_compressed(out, **args)


def test_parse_method_types_and_errors():
    assert parse_method("ptq:bits=2,group=64,algo=gptq,hadamard=1,damp=0.05") == (
        "ptq", {"bits": 2, "group": 64, "algo": "gptq", "hadamard": 1, "damp": 0.05})
    assert parse_method(" archive ") == ("archive", {})
    assert compressed.format_method(*parse_method("quant:levels=11,lr=x")) == "quant:levels=11,lr=x"
    for bad in ["", "ptq:bits", "ptq:bits=2,bits=3", "p q:bits=1", "ptq:=3", "ptq:bits=2,"]:
        with pytest.raises(TokenboundError) as e:
            parse_method(bad)
        assert e.value.param == "method" and e.value.cli_message().startswith("--method")


def test_write_and_load_round_trip(tmp_path, fake_decoder):
    man = _write(tmp_path / "c", fake_decoder, num_coded_params=5, extra_bits={"alpha grid": 3.0})
    assert man["kind"] == KIND_COMPRESSED
    assert man["message_bits"] == 160 + 10 + 3 + 1.5
    assert man["bits_per_coded_param"] == pytest.approx(man["message_bits"] / 5)
    assert man["extra_bits"] == {"alpha grid": 3.0}
    on_disk = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert on_disk["files"]["payload.bin"] == man["files"]["payload.bin"]
    model = tokenbound.load(tmp_path / "c")  # dispatch through models.loading
    lp = model.log_probs(torch.zeros(1, 3, dtype=torch.long))
    assert torch.allclose(lp[0, 0], torch.log_softmax(torch.arange(5.0), -1))
    _, state, manifest = decode_state(tmp_path / "c")
    assert state_sha256(state) == manifest["decoded_sha256"]


def test_flipped_byte_names_the_file(tmp_path, fake_decoder):
    _write(tmp_path / "c", fake_decoder)
    f = tmp_path / "c" / "payload.bin"
    data = bytearray(f.read_bytes())
    data[3] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(TokenboundError, match="payload.bin"):
        load_compressed(tmp_path / "c")
    f.unlink()
    with pytest.raises(TokenboundError, match="payload.bin: bitstream file missing"):
        load_compressed(tmp_path / "c")


def test_decoded_state_must_match_manifest(tmp_path, fake_decoder):
    _write(tmp_path / "c", fake_decoder, decoded_sha256="f" * 64)
    with pytest.raises(TokenboundError, match="decoded weights hash"):
        load_compressed(tmp_path / "c")


def test_message_bits_must_be_the_sum(tmp_path, fake_decoder):
    with pytest.raises(ValueError, match="message_bits"):
        _write(tmp_path / "c", fake_decoder, message_bits=1.0)
    _write(tmp_path / "d", fake_decoder)
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    man["message_bits"] = 1.0  # a manifest that understates its own length is refused
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TokenboundError, match="not the sum"):
        load_compressed(tmp_path / "d")


def test_refuses_overwrite_and_bad_arguments(tmp_path, fake_decoder):
    _write(tmp_path / "c", fake_decoder)
    with pytest.raises(TokenboundError, match="already exists"):
        _write(tmp_path / "c", fake_decoder)
    _write(tmp_path / "c", fake_decoder, logits=np.ones(3, dtype="<f4"), force=True)
    assert load_compressed(tmp_path / "c").vocab_size == 3
    with pytest.raises(ValueError, match="decoder"):
        _write(tmp_path / "e", "nope")
    with pytest.raises(ValueError, match="not allowed"):
        _write(tmp_path / "e", fake_decoder, files={"../x": b"1"})
    with pytest.raises(ValueError, match="source"):
        _write(tmp_path / "e", fake_decoder, source={"type": "zip", "path": "x", "sha256": "0"})
    assert not (tmp_path / "e").exists()


def test_unknown_decoder_in_manifest(tmp_path, fake_decoder):
    _write(tmp_path / "c", fake_decoder)
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    man["decoder"] = "mystery"
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(TokenboundError, match="unknown decoder"):
        load_compressed(tmp_path / "c")


def test_codecs_import_no_model_code():
    """coding/ holds only codecs and byte formats: importing every module of it loads nothing that builds or
    trains a model (the decoders import coding/, never the other way round)."""
    import pkgutil
    import subprocess
    import sys

    import tokenbound.coding

    names = [f"tokenbound.coding.{m.name}" for m in pkgutil.iter_modules(tokenbound.coding.__path__)]
    code = (f"import importlib, sys; [importlib.import_module(n) for n in {names!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['tokenbound', 'models'], ['tokenbound', 'compress'], ['tokenbound', 'evaluate'], ['tokenbound', 'train'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert len(names) >= 8 and out.strip() == "[]"
