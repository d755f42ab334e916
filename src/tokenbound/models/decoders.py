"""CompressedModel decoders: the verified bitstream of each format -> the LanguageModel it describes.

``coding.compressed.DECODERS`` names these functions; each has the signature ``(path, manifest, device) ->
(LanguageModel, decoded state)``, reads only the files the manifest lists (each checked against its sha256 by
``coding.compressed.read_verified``), and returns the state the model evaluates, which
``coding.compressed.decode_state`` hashes and compares with the manifest's ``decoded_sha256``
(docs/compression.md). The byte formats themselves are the codecs in ``coding/``; this module only rebuilds
models from what they decode.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..artifacts import KIND_RUN, sha256_dir, sha256_file
from ..coding import archive, ptq, quantize
from ..coding.compressed import read_verified
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


def archive_source(src: Path) -> tuple[dict[str, Any], str]:
    """(source record for the manifest, layout 'file' | 'tar') of a model artifact the archive method takes."""
    from .loading import artifact_type

    key = artifact_type(src)
    if key == "gguf":
        return {"type": "gguf", "path": str(src), "sha256": sha256_file(src)}, "file"
    if key == "hf":
        return {"type": "hf", "path": str(src), "sha256": sha256_dir(src)}, "tar"
    if key == KIND_RUN:
        return {"type": "run", "path": str(src), "sha256": sha256_dir(src)}, "tar"
    raise TokenboundError(f"{src}: the archive method takes a .gguf file, a Hugging Face directory or a Run, "
                          f"not a {key}")


def load_archived(header: dict[str, Any], raw: bytes, device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """The model loaded from an archive's decompressed bytes (written to a temporary location) and its state."""
    from .loading import load

    with tempfile.TemporaryDirectory(prefix="tokenbound-archive-") as tmp:
        model = load(archive.materialize(header, raw, Path(tmp)), device=device)
        # Removing the directory is safe even for memory-mapped weights: an unlinked file stays mapped.
        state = archive.model_state(model)
    return model, state


def decode_archive(path: Path, manifest: dict[str, Any], device: str = "cpu") -> tuple[LanguageModel, dict[str, Any]]:
    """DECODERS["archive"]: decompress into a temporary location, load it, return (model, evaluated state)."""
    return load_archived(*archive.read_archive(Path(path), manifest), device)
