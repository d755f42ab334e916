"""Held-out (test-set) certificates: evidence that the model is independent of the certified data.

A test-set bound charges no message (docs/theory.md §10), which is only valid when the model was fixed without
seeing the held-out stream. `establish_independence` decides, from what the model's manifest records, how
that is shown:

- a tokenbound model (Run, CompressedModel, Markov model) records every store it has seen (training, and a
  compressor's own level-grid/QAT/calibration data). The held-out store must not be one of them and must
  share no document (token-id sequence under the same tokenizer) with any of them; when it is the ``val/``
  split of that store this is the case by construction of `prepare` (docs/data.md) and is re-checked.
- an external model (Hugging Face, GGUF, a CompressedModel of one) was trained on data nobody here can check:
  the caller must state the assumption (``assume_unseen``, ``--assume-unseen``), which the certificate
  records and its summary repeats.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import KIND_COMPRESSED, KIND_MARKOV, KIND_RUN, read_manifest, resolve_recorded_path, sha256_dir
from ..data.store import TokenStore
from ..errors import TokenboundError

UNSEEN_ASSUMPTION = "the model was not trained on this data"
UNSEEN_FLAG = "--assume-unseen"


@dataclass
class SeenStore:
    """A store the model has seen: its role, sha256, and the reference (relative to `referrer`) to find it."""

    role: str
    sha256: str
    ref: Any = None
    referrer: Path | None = None


def document_hashes(store: TokenStore) -> set[bytes]:
    """One digest per document (its token ids), to detect held-out documents that also occur in training."""
    out = set()
    for j in range(store.num_documents):
        out.add(hashlib.blake2b(np.ascontiguousarray(store.document(j)).tobytes(), digest_size=16).digest())
    return out


def same_tokenization(a: TokenStore, b: TokenStore) -> bool:
    """Whether equal token-id documents in `a` and `b` mean equal text: same vocabulary, eot and tokenizer."""
    if (a.vocab_size, a.eot, a.manifest.get("tokenizer")) != (b.vocab_size, b.eot, b.manifest.get("tokenizer")):
        return False
    ta, tb = a.manifest.get("tokenizer_sha256"), b.manifest.get("tokenizer_sha256")
    return ta == tb or a.manifest.get("tokenizer") == "byte"


def check_disjoint(heldout: TokenStore, train: TokenStore, what: str = "the training store") -> int:
    """Refuse unless `heldout` shares no document with `train`; returns the number of held-out documents."""
    if heldout.sha256 == train.sha256:
        raise TokenboundError(f"{heldout.path} is {what} itself", param="heldout")
    if not same_tokenization(heldout, train):
        raise TokenboundError(f"{heldout.path} and {what} {train.path} are tokenized differently, so their "
                              f"documents cannot be compared", param="heldout")
    shared = len(document_hashes(heldout) & document_hashes(train))
    if shared:
        raise TokenboundError(f"{heldout.path} shares {shared} document(s) with {what} {train.path}; a test-set "
                              f"bound needs data the model never saw", param="heldout")
    return heldout.num_documents


def seen_stores(model_path: Path, kind: str) -> tuple[list[SeenStore], str | None]:
    """(the stores the model's manifest says it has seen, why its training data is unknown — None if known)."""
    model_path = Path(model_path)
    if kind == KIND_RUN:
        man = read_manifest(model_path, KIND_RUN)
        data = man.get("data")
        if isinstance(data, dict) and data.get("sha256"):
            # a fine-tune (train --init-from) also records the stores its base Run has seen
            inherited = [SeenStore(e.get("role", "training"), e["sha256"], e if e.get("path") else None, model_path)
                         for e in man.get("inherited_stores") or [] if isinstance(e, dict) and e.get("sha256")]
            return [SeenStore("training", data["sha256"], data, model_path), *inherited], None
        return [], f"the Run {model_path} records no training store"
    if kind == KIND_MARKOV:
        man = read_manifest(model_path, KIND_MARKOV)
        if man.get("source_store_sha256"):
            return [SeenStore("training", man["source_store_sha256"], man.get("source_store"), model_path)], None
        return [], f"the Markov model {model_path} records no training store"
    if kind == KIND_COMPRESSED:
        return _compressed_seen(model_path)
    return [], f"{model_path} is a pretrained {'Hugging Face' if kind == 'hf' else kind.upper()} model whose " \
               f"training data is unknown"


def _compressed_seen(model_path: Path) -> tuple[list[SeenStore], str | None]:
    man = read_manifest(model_path, KIND_COMPRESSED)
    seen = [SeenStore(e.get("role", "training"), e["sha256"], e if e.get("path") else None, model_path)
            for e in man.get("training_stores") or [] if isinstance(e, dict) and e.get("sha256")]
    calib = man.get("calibration")
    if isinstance(calib, dict) and calib.get("sha256"):
        seen.append(SeenStore("calibration", calib["sha256"], calib.get("store"), model_path))
    source = man.get("source") or {}
    if source.get("type") in ("hf", "gguf"):
        return seen, (f"{model_path} compresses a pretrained {source['type']} model whose training data is unknown")
    if source.get("type") == "run" and "training_stores" not in man:
        # Written before CompressedModels recorded their training stores: follow the source Run if it is here.
        try:
            run = resolve_recorded_path(source, model_path, "source", sha256=source.get("sha256"),
                                        identify=sha256_dir)
        except TokenboundError:
            return seen, (f"{model_path} records no training store and its source Run {source.get('path')} is not "
                          f"found")
        run_seen, unknown = seen_stores(run, KIND_RUN)
        return seen + run_seen, unknown
    if not seen:
        return seen, f"{model_path} records no training store"
    return seen, None


def _locate(seen: SeenStore, candidates: list[TokenStore | None]) -> TokenStore | None:
    for c in candidates:
        if c is not None and c.sha256 == seen.sha256:
            return c
    if seen.ref is None or seen.referrer is None:
        return None
    try:
        path = resolve_recorded_path(seen.ref, seen.referrer, "data", sha256=seen.sha256,
                                     identify=lambda p: read_manifest(p).get("sha256"))
        store = TokenStore.open(path)
    except TokenboundError:
        return None
    return store if store.sha256 == seen.sha256 else None


def _same_dir(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def establish_independence(heldout: TokenStore, data: TokenStore, model_path: Path, kind: str, *,
                           train_data: TokenStore | None = None, assume_unseen: bool = False) -> dict[str, Any]:
    """How `heldout` (the store to certify, from `data`) is shown independent of the model; a one-line error if
    it cannot be. Returns the record the certificate keeps under ``data.heldout_independence``."""
    seen, unknown = seen_stores(model_path, kind)
    if unknown is None and assume_unseen:
        raise TokenboundError(f"{model_path} records the data it was trained on, so independence is checked "
                              f"against it, not assumed; drop {UNSEEN_FLAG}", param="assume_unseen")
    if unknown is not None and not assume_unseen:
        raise TokenboundError(f"{unknown}; pass {UNSEEN_FLAG} to certify under the assumption that "
                              f"{UNSEEN_ASSUMPTION}", param="heldout")
    if train_data is not None and seen and all(s.sha256 != train_data.sha256 for s in seen):
        raise TokenboundError(f"{train_data.path} is not the model's training store (the model's manifest "
                              f"records sha256 {', '.join(s.sha256[:16] for s in seen)})", param="train_data")
    checks = []
    for s in seen:
        if heldout.sha256 == s.sha256:
            raise TokenboundError(f"{heldout.path} is the model's own {s.role} store", param="heldout")
        store = _locate(s, [data, train_data])
        if store is None:
            raise TokenboundError(f"cannot show that {heldout.path} is disjoint from the model's {s.role} store "
                                  f"(sha256 {s.sha256[:16]}), which is not found; pass --train-data DIR",
                                  param="heldout")
        n = check_disjoint(heldout, store, f"the model's {s.role} store")
        how = ("the val split of the model's training store, checked document by document"
               if _same_dir(heldout.path, store.path / "val") else "no document in common with the store")
        checks.append({"role": s.role, "sha256": s.sha256, "how": how, "documents_checked": n})
    if train_data is not None and not seen:
        n = check_disjoint(heldout, train_data, "--train-data")
        checks.append({"role": "stated by --train-data", "sha256": train_data.sha256,
                       "how": "no document in common with the store", "documents_checked": n})
    return {"established": "assumed" if unknown is not None else "checked", "checks": checks,
            "assumption": UNSEEN_ASSUMPTION if unknown is not None else None,
            "unknown_training_data": unknown}


def tokenizer_charge(store: TokenStore, heldout: bool) -> dict[str, float]:
    """``{"tokenizer": bits}`` when the store's tokenizer was fitted on its own training documents and charged
    (``prepare --tokenizer-fit train-charged``, docs/data.md); nothing for a held-out store (the tokenizer was
    fixed before it was seen) or a tokenizer fitted on the tokenizer split or given from a file."""
    fit = store.manifest.get("tokenizer_fit") or {}
    if heldout or fit.get("mode") != "train-charged":
        return {}
    return {"tokenizer": float(fit["code_bits"])}


def certificate_assumptions(independence: dict[str, Any] | None, store: TokenStore,
                            tokenizer_bits: dict[str, float]) -> list[str]:
    """What the certificate's data side rests on, one sentence each. Sentences starting "assumed:" are not
    checked by tokenbound and are repeated in the summary (docs/theory.md §12)."""
    out = []
    if independence is not None:
        for c in independence["checks"]:
            out.append(f"checked: the held-out store is independent of the model's {c['role']} store "
                       f"(sha256 {c['sha256'][:16]}): {c['how']}")
        if independence["established"] == "assumed":
            out.append(f"assumed: {UNSEEN_ASSUMPTION} ({UNSEEN_FLAG}; {independence['unknown_training_data']})")
    fit = store.manifest.get("tokenizer_fit") or {}
    mode, spec = fit.get("mode"), store.manifest.get("tokenizer")
    if mode == "tokenizer-split":
        out.append(f"checked: the tokenizer ({spec}) was fitted on a separate tokenizer split of {fit['documents']} "
                   f"documents (identities sha256 {fit['identities_sha256'][:16]}), in neither the training nor "
                   f"the held-out store")
    elif mode == "tokenizer-corpus":
        c, d = fit["corpus"], fit["disjoint"]
        out.append(f"checked: the tokenizer ({spec}) was fitted on {fit['documents']} documents of another corpus, "
                   f"{c['spec']} (sha256 {c['sha256'][:16]}), sharing no file and no document content with this "
                   f"store's corpus ({d['shared_content_left_out']} with shared content left out of the fit)")
    elif mode == "train-charged":
        out.append(f"charged: the tokenizer ({spec}) was fitted on the training documents; "
                   + (f"its code length, {fit['code_bits']:.0f} bits, is paid as extra_bits.tokenizer"
                      if tokenizer_bits else "the held-out store was not among them"))
    elif mode == "fixed":
        out.append(f"fixed: the tokenizer ({spec}) was given from a file, fixed before the data were seen")
    elif mode == "pretokenized":
        out.append("assumed: the ids of this pre-tokenized corpus come from a tokenizer fixed before the data "
                   "were seen")
    elif spec is not None and str(spec).startswith("bpe:") and independence is None:
        out.append(f"assumed: the tokenizer ({spec}) was fixed in advance (the store predates the tokenizer split: "
                   f"it was fitted on the training documents and is not charged)")
    return out


__all__ = ["tokenizer_charge", "certificate_assumptions", "establish_independence", "check_disjoint", "document_hashes", "seen_stores", "UNSEEN_ASSUMPTION"]
