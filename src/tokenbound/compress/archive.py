"""The ``archive`` method of the compress stage: any loadable model artifact -> a CompressedModel holding its
files compressed by the smallest of the general-purpose codecs (docs/pretrained.md; the format and codecs are
``coding.archive``, the decoder ``models.decoders.decode_archive``).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..artifacts import KIND_RUN, dumps_canonical, sha256_bytes, sha256_dir, sha256_file
from ..bounds.prefix import choice_bits, elias_gamma_bits
from ..coding.archive import ARCHIVE_FORMAT, CODECS, HEADER_FILE, PAYLOAD_FILE, canonical_tar
from ..coding.compressed import format_method, write_compressed
from ..errors import TokenboundError
from ..models.decoders import load_archived


def archive_source(src: Path) -> tuple[dict[str, Any], str]:
    """(source record for the manifest, layout 'file' | 'tar') of a model artifact the archive method takes."""
    from ..models.loading import artifact_type

    key = artifact_type(src)
    if key == "gguf":
        return {"type": "gguf", "path": str(src), "sha256": sha256_file(src)}, "file"
    if key == "hf":
        return {"type": "hf", "path": str(src), "sha256": sha256_dir(src)}, "tar"
    if key == KIND_RUN:
        return {"type": "run", "path": str(src), "sha256": sha256_dir(src)}, "tar"
    raise TokenboundError(f"{src}: the archive method takes a .gguf file, a Hugging Face directory or a Run, "
                          f"not a {key}")


def _num_params(model: Any) -> int:
    module = getattr(model, "module", model)
    return int(sum(p.numel() for p in module.parameters())) if hasattr(module, "parameters") else 0


def compress_archive(src: Path, out: Path, force: bool = False, codecs: tuple[str, ...] | None = None,
                     device: str = "cpu") -> dict[str, Any]:
    """Write `src` compressed by the smallest of `codecs` (default: all of CODECS) as a CompressedModel.

    Returns the manifest. message_bits = 8·|header| + 8·|payload| + Elias-gamma prefixes of both lengths +
    log2(#codecs) grid bits (the codec is chosen after seeing the bytes). The chosen output is decompressed
    and compared with the source bytes, and the model is loaded from those decompressed bytes to record
    ``decoded_sha256``.
    """
    from ..coding.hashing import state_sha256
    from ..progress import track

    src, out = Path(src), Path(out)
    codecs = tuple(codecs) if codecs else tuple(CODECS)
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or len(set(codecs)) != len(codecs):
        raise TokenboundError(f"codecs must be distinct names from {list(CODECS)}, got {codecs}", param="method",
                              value="archive")
    if out.exists() and not force:
        raise TokenboundError("already exists (use --force to overwrite)", param="out", value=out)
    source, layout = archive_source(src)
    raw = src.read_bytes() if layout == "file" else canonical_tar(src)
    # The compressors release the GIL, so threads run them side by side where cores are free.
    with ThreadPoolExecutor(max_workers=max(1, min(len(codecs), os.cpu_count() or 1))) as pool:
        futures = {codec: pool.submit(CODECS[codec][0], raw) for codec in codecs}
        blobs = {codec: fut.result() for codec, fut in
                 track(futures.items(), f"archive {src.name}", "codecs", total=len(futures))}
    sizes = {codec: len(blob) for codec, blob in blobs.items()}
    codec = min(codecs, key=lambda c: (sizes[c], codecs.index(c)))  # ties keep the earlier codec of the grid
    blob = blobs[codec]
    del blobs
    if CODECS[codec][1](blob) != raw:
        raise TokenboundError(f"{src}: {codec} round trip did not reproduce the input (compressor bug)")
    header = {"format": ARCHIVE_FORMAT, "codec": codec, "layout": layout, "name": src.name,
              "size": len(raw), "sha256": sha256_bytes(raw)}
    header_bytes = dumps_canonical(header).encode()
    model, state = load_archived(header, CODECS[codec][1](blob), device)
    header_bits, payload_bits = 8 * len(header_bytes), 8 * len(blob)
    breakdown = {"payload_bits": payload_bits, "header_bits": header_bits,
                 "prefix_bits": elias_gamma_bits(header_bits) + elias_gamma_bits(payload_bits),
                 "grid_bits": choice_bits(len(codecs)), "tensors": {src.name: payload_bits}}
    n_params = _num_params(model)
    method = format_method("archive", {"codecs": "+".join(codecs)} if codecs != tuple(CODECS) else {})
    return write_compressed(out, method=method, decoder="archive", source=source,
                            files={HEADER_FILE: header_bytes, PAYLOAD_FILE: blob}, breakdown=breakdown,
                            decoded_sha256=state_sha256(state), force=force, codec=codec, codecs=list(codecs),
                            candidate_bytes=sizes, raw_bytes=len(raw), num_coded_params=n_params,
                            model=model.describe() if hasattr(model, "describe") else {})
