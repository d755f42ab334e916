"""CompressedModel decoders: the verified bitstream of each format -> the LanguageModel it describes.

``decode_state(path)`` is the one way a CompressedModel is decoded (``tokenbound.load``, ``verify``, the
compress stage's round trip): it checks the manifest and every listed file's sha256, runs the format's decoder
(``DECODERS``) and compares the hash of the state the model evaluates with the manifest's ``decoded_sha256``
(docs/compression.md). Each decoder has the signature ``(path, manifest, device) -> (LanguageModel, decoded
state)`` and reads only the files the manifest lists (``coding.compressed.read_verified``). The byte formats
themselves are the codecs in ``coding/``; this module only rebuilds models from what they decode.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..coding import archive, ptq, quantize
from ..coding.compressed import read_compressed_manifest, read_verified, verify_files
from ..errors import TokenboundError
from .base import LanguageModel


def decode_quant(path: Path, manifest: dict[str, Any], device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """DECODERS["quant"]: rebuild the GPT from the header's config (frozen parts regenerate from their seeds),
    load the dequantized coded tensors, return (GPTLanguageModel, decoded coded state)."""
    from .gpt import GPTConfig, GPTLanguageModel, build_model, load_coded_state_dict

    path = Path(path)
    body = (path / quantize.PAYLOAD).read_bytes()
    q, model_config = quantize.decode_message(body, where=str(path / quantize.PAYLOAD))
    state = quantize.decoded_state(q)
    config = GPTConfig.from_dict(model_config)
    module = build_model(config)
    load_coded_state_dict(module, state)
    module.to(device)
    module.eval()
    return GPTLanguageModel(module, config), state


def ptq_model(header_bytes: bytes, side: bytes, payload: bytes, device: str = "cpu", where: str = "ptq"
              ) -> tuple[LanguageModel, dict[str, Any]]:
    """(HFLanguageModel, its evaluated state_dict) rebuilt from the three PTQ byte strings."""
    from .hf import HFLanguageModel, module_from_config

    header, state = ptq.decode_tensors(header_bytes, side, payload, where=where)
    module = module_from_config(header["config"], state, device=device, where=where)
    return HFLanguageModel(module, {"type": "compressed", "decoder": "ptq"}), module.state_dict()


def decode_ptq(path: Path, manifest: dict[str, Any], device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """DECODERS["ptq"]: (model, evaluated state) from a PTQ CompressedModel directory."""
    path = Path(path)
    parts = [read_verified(path, manifest, f) for f in (ptq.HEADER_FILE, ptq.SIDE_FILE, ptq.PAYLOAD_FILE)]
    return ptq_model(*parts, device=device, where=str(path))


def model_state(model: Any) -> dict[str, Any]:
    """The tensors a LanguageModel evaluates: the state_dict of its torch module."""
    module = getattr(model, "module", None)
    if module is not None and hasattr(module, "state_dict"):
        return module.state_dict()
    if hasattr(model, "state_dict"):
        return model.state_dict()
    raise TokenboundError(f"{type(model).__name__}: cannot read the weights it evaluates")


def load_archived(header: dict[str, Any], raw: bytes, device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """The model loaded from an archive's decompressed bytes (written to a temporary location) and its state."""
    from .loading import load

    with tempfile.TemporaryDirectory(prefix="tokenbound-archive-") as tmp:
        model = load(archive.materialize(header, raw, Path(tmp)), device=device)
        # Removing the directory is safe even for memory-mapped weights: an unlinked file stays mapped.
        state = model_state(model)
    return model, state


def decode_archive(path: Path, manifest: dict[str, Any], device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """DECODERS["archive"]: decompress into a temporary location, load it, return (model, evaluated state)."""
    return load_archived(*archive.read_archive(Path(path), manifest), device)


# decoder name (a manifest's ``decoder``, one of coding.compressed.DECODER_NAMES) -> its decoder
DECODERS = {"quant": decode_quant, "ptq": decode_ptq, "archive": decode_archive}


def decode_state(path: Path, device: str = "cpu") -> tuple[LanguageModel, dict[str, Any], dict[str, Any]]:
    """Decode a CompressedModel: (model, decoded state, manifest), after verifying every file and the state hash."""
    from ..coding.hashing import state_sha256

    path = Path(path)
    manifest = read_compressed_manifest(path)
    verify_files(path, manifest)
    decoder = DECODERS.get(manifest["decoder"])
    if decoder is None:
        raise TokenboundError(f"{path}: decoder {manifest['decoder']!r} is not available")
    model, state = decoder(path, manifest, device)
    got = state_sha256(state)
    if got != manifest["decoded_sha256"]:
        raise TokenboundError(f"{path}: decoded weights hash to {got[:16]}…, manifest says "
                              f"{str(manifest['decoded_sha256'])[:16]}… (decoder mismatch or corrupted artifact)")
    return model, state, manifest


def load_compressed(path: Path, device: str = "cpu") -> LanguageModel:
    """What ``tokenbound.load`` calls for a CompressedModel: the verified decoded LanguageModel."""
    model, _state, _manifest = decode_state(path, device=device)
    return model
