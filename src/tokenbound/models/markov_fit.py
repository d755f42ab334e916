"""Fitting a Markov model on a TokenStore (`tokenbound markov`) and its model directory (docs/design.md §4).

The directory holds the bitstream (``markov_code.BITSTREAM``) and manifest.json (kind tokenbound.markov_model).
``load_markov`` rebuilds the model by decoding that bitstream, so what is scored is exactly what is coded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import KIND_MARKOV, MANIFEST, atomic_output_dir, make_manifest, path_record, read_manifest, \
    sha256_file, write_bytes, write_json
from ..errors import TokenboundError
from .markov import DEFAULT_SMOOTHING, MarkovModel
from .markov_code import BITSTREAM, verified_bitstream
from .markov_table import check_shape


def save_markov(model: MarkovModel, out: str | Path, *, source_sha256: str | None = None, force: bool = False,
                source_path: str | Path | None = None) -> Path:
    """Write the bitstream and manifest.json (kind tokenbound.markov_model) atomically.

    `source_path` (the store it was fitted on) is recorded relative to `out` (``artifacts.path_record``).
    """
    source = None if source_path is None else {**path_record(source_path, out), "sha256": source_sha256}
    with atomic_output_dir(out, force=force) as tmp:
        write_bytes(tmp / BITSTREAM, model.encode())
        write_json(tmp / MANIFEST, make_manifest(
            KIND_MARKOV, **model.describe(), bitstream=BITSTREAM, bitstream_sha256=sha256_file(tmp / BITSTREAM),
            message_bits_breakdown={"payload_bits": model.payload_bits,
                                    "prefix_bits": model.message_bits - model.payload_bits},
            source_store_sha256=source_sha256, source_store=source))
    return Path(out)


def load_markov(path: Path, device: str = "cpu") -> MarkovModel:
    """Load a saved Markov model by decoding its bitstream (the name tokenbound.models.loading expects)."""
    path = Path(path)
    man = read_manifest(path, KIND_MARKOV)
    stream, data = verified_bitstream(path, man)
    model = MarkovModel.decode(data, where=str(stream))
    if model.message_bits != man.get("message_bits"):
        raise TokenboundError(
            f"{path}: manifest message_bits {man.get('message_bits')} != decoded {model.message_bits}")
    return model


def fit_store(data: str | Path, order: int, out: str | Path, smoothing: str = DEFAULT_SMOOTHING,
              force: bool = False) -> dict[str, Any]:
    """`tokenbound markov`: fit on a TokenStore's whole stream, save, re-load from the bitstream, summarise."""
    from ..data.store import TokenStore

    store = TokenStore.open(data).check("data")
    check_shape(store.vocab_size, store.eot, order)
    model = MarkovModel.fit(np.asarray(store.tokens), store.doc_offsets, store.vocab_size, store.eot, order,
                            smoothing)
    save_markov(model, out, source_sha256=store.sha256, force=force, source_path=store.path)
    decoded = load_markov(Path(out))
    if decoded.encode() != model.encode():  # what is scored must be exactly what is coded
        raise TokenboundError(f"{out}: decoded model differs from the fitted one")
    return {"out": str(out), **model.describe(), "source_store_sha256": store.sha256}
