"""`tokenbound bound`: score a model on its training tokens, then certify it (DESIGN §1, §3, §6).

The certificate is written next to the statistics it was computed from:
``CERT.json`` and ``CERT.stats/`` (the scorer's shards and ``tokenstats.npz``; ``CERT.docstats/`` for the
document-level baseline). Scoring is resumable: rerunning the same command after an interruption reuses the
finished shards and produces a bit-identical certificate.

Message length: a CompressedModel or Markov model carries its verified code length; any other model (an
uncompressed Run, a Hugging Face directory, a GGUF file) is charged the length of its best lossless archive,
labelled as such. ``heldout=True`` certifies a held-out store with message length 0 (a test-set bound).
"""
from __future__ import annotations

import hashlib
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import (KIND_COMPRESSED, KIND_MARKOV, read_manifest, sha256_dir, sha256_file,
                         write_json)
from ..bounds.budget import check_delta
from ..bounds.certificate import certify, default_pilot_draws
from ..bounds.stats import TokenStats
from ..data.context import ContextRule
from ..data.store import TokenStore
from ..errors import TokenboundError
from .control import DEFAULT_CONTROL, attach_control, check_control_spec
from .shards import STATS_FILE
from ..models.loading import artifact_type, load

DEFAULT_SAMPLES = 10_000


@dataclass
class MessageLength:
    """What a certificate charges for describing the model, and where the number comes from."""

    bits: float
    label: str
    prefix_free: bool = True
    extra_bits: dict[str, float] = field(default_factory=dict)
    model_sha256: str = ""  # identity of exactly what is scored (decoded weights for a CompressedModel)
    details: dict[str, Any] = field(default_factory=dict)


def artifact_sha256(path: Path) -> str:
    path = Path(path)
    return sha256_file(path) if path.is_file() else sha256_dir(path)


def message_length(model_path: Path, kind: str, device: str = "cpu") -> MessageLength:
    """The verified message length of a model artifact (see module docstring)."""
    model_path = Path(model_path)
    if kind == KIND_COMPRESSED:
        man = read_manifest(model_path, KIND_COMPRESSED)
        return MessageLength(float(man["message_bits"]), f"compressed ({man['method']})", True,
                             {k: float(v) for k, v in (man.get("extra_bits") or {}).items()},
                             man["decoded_sha256"], {"breakdown": man.get("message_breakdown"),
                                                     "method": man["method"],
                                                     "bits_per_coded_param": man.get("bits_per_coded_param")})
    if kind == KIND_MARKOV:
        man = read_manifest(model_path, KIND_MARKOV)
        return MessageLength(float(man["message_bits"]), f"markov (order {man.get('order')}, entropy-coded counts)",
                             True, {}, artifact_sha256(model_path), {"order": man.get("order")})
    # An uncompressed model: charge its best lossless archive (verified by decompression).
    from ..coding.archive import compress_archive

    src = model_path
    with tempfile.TemporaryDirectory() as tmp:
        man = compress_archive(src, Path(tmp) / "archive", device=device)
    return MessageLength(float(man["message_bits"]), f"archive of the uncompressed model ({man.get('codec')})",
                         True, {k: float(v) for k, v in (man.get("extra_bits") or {}).items()},
                         man["decoded_sha256"], {"breakdown": man.get("message_breakdown")})


def default_context(model, kind: str, model_path: Path) -> str:
    """The model's own context rule: doc-rule over its full context (its order, for a Markov chain)."""
    if kind == KIND_MARKOV:
        order = int(read_manifest(model_path, KIND_MARKOV)["order"])
        return f"doc:{max(order, 1)}"
    if model.max_context is None:
        return "doc:1024"
    return f"doc:{min(int(model.max_context), 1024)}"


def document_hashes(store: TokenStore) -> set[bytes]:
    """One digest per document (its token ids), to detect held-out documents that also occur in training."""
    out = set()
    for j in range(store.num_documents):
        out.add(hashlib.blake2b(np.ascontiguousarray(store.document(j)).tobytes(), digest_size=16).digest())
    return out


def check_disjoint(heldout: TokenStore, train: TokenStore) -> None:
    if heldout.sha256 == train.sha256:
        raise TokenboundError(f"--heldout: {heldout.path} is the training store itself")
    shared = len(document_hashes(heldout) & document_hashes(train))
    if shared:
        raise TokenboundError(f"--heldout: {heldout.path} shares {shared} document(s) with the training store "
                              f"{train.path}; a test-set bound needs data the model never saw")


def resolve_stores(data: Path, heldout: bool, train_data: Path | None) -> tuple[TokenStore, TokenStore | None]:
    """(store to certify on, training store if known). With --heldout, DATA/val is used when it exists."""
    store = TokenStore.open(data)
    if not heldout:
        return store, store
    val = store.val
    if val is not None:
        train = TokenStore.open(train_data) if train_data else store
        check_disjoint(val, train)
        return val, train
    train = TokenStore.open(train_data) if train_data else None
    if train is not None:
        check_disjoint(store, train)
    return store, train


def stats_dir_for(out: Path, suffix: str) -> Path:
    """CERT.json -> CERT.stats (or CERT.docstats) beside it."""
    return out.with_name(out.stem + suffix)


def bound(model_path: Path, data: Path, out: Path, *, samples: int = DEFAULT_SAMPLES, context: str | None = None,
          sampler: str = "token", delta: float = 0.05, heldout: bool = False, doc_samples: int = 0,
          seed: int = 0, device: str = "cpu", batch_size: int = 8, train_data: Path | None = None,
          methods: Sequence[str] = ("azuma", "variance_adaptive"), alpha_grid: Sequence[float] | None = None,
          extra_bits: dict[str, float] | None = None, subsample_ci: str = "betting", force: bool = False,
          progress: bool = True, message: MessageLength | None = None,
          control_variate: str = DEFAULT_CONTROL, pilot_draws: int | None = None) -> dict[str, Any]:
    """Score `model_path` on `data` and write a certificate to `out` (JSON); return the certificate.

    `message` overrides the message length (used by experiments that already computed it). `subsample_ci` is
    the confidence bound the variance-adaptive method uses for its subsampled sums (the Azuma method always
    uses Hoeffding, as the seed paper does); see docs/theory.md §5. `control_variate` (evaluate/control.py:
    "markov:1", "markov:0" or "none") is attached to the statistics and used with the betting bound.
    `pilot_draws` (default: a tenth of the draws from 200 on) choose α and λ before the rest certify them.
    """
    from ..evaluate.score import score

    model_path, data, out = Path(model_path), Path(data), Path(out)
    if out.suffix != ".json":
        raise TokenboundError(f"--out {out}: a certificate is a .json file")
    if out.exists() and not force:
        raise TokenboundError(f"--out {out}: already exists (use --force to overwrite)")
    if samples <= 0:
        raise TokenboundError(f"--samples: must be a positive integer, got {samples}")
    if doc_samples < 0:
        raise TokenboundError(f"--doc-samples: must be >= 0, got {doc_samples}")
    check_delta(delta, "--delta")
    if pilot_draws is None:
        pilot_draws = default_pilot_draws(samples)
    if pilot_draws < 0 or (pilot_draws and pilot_draws > samples - 2):
        raise TokenboundError(f"--pilot-draws: must be 0 or between 1 and --samples − 2 = {samples - 2}, "
                              f"got {pilot_draws}")
    kind = artifact_type(model_path)
    store, train_store = resolve_stores(data, heldout, train_data)
    check_control_spec(control_variate, store.num_tokens if subsample_ci == "betting" else 0)
    msg = message or message_length(model_path, kind, device=device)
    model = load(model_path, device=device)
    rule = ContextRule.parse(context or default_context(model, kind, model_path))

    stats = score(model, store, rule, sampler, samples, seed, out_dir=stats_dir_for(out, ".stats"),
                  batch_size=batch_size, device=device, progress=progress, model_sha256=msg.model_sha256)
    if control_variate != "none" and subsample_ci == "betting":
        stats = attach_control(stats, store, control_variate)
        stats.save(stats_dir_for(out, ".stats") / STATS_FILE)
    doc_stats = None
    if doc_samples:
        # non-overlapping windows laid over each sampled document: every token once, one pass per B tokens
        doc_rule = ContextRule.parse(f"doc:{rule.block}/{rule.block}")
        doc_stats = score(model, store, doc_rule, "document", doc_samples, seed + 1,
                          out_dir=stats_dir_for(out, ".docstats"), batch_size=batch_size, device=device,
                          progress=progress, model_sha256=msg.model_sha256)
    extras = {**msg.extra_bits, **(extra_bits or {})}
    cert = certify(
        stats, message_bits=msg.bits, message_prefix_free=msg.prefix_free, extra_bits=extras, delta=delta,
        methods=tuple(methods), heldout=heldout, document_stats=doc_stats,
        num_documents=store.num_documents if doc_stats is not None else None,
        mean_bytes_per_token=store.mean_bytes_per_token, subsample_ci=subsample_ci, pilot_draws=pilot_draws,
        **({"alpha_grid": tuple(alpha_grid)} if alpha_grid else {}),
        model={"path": str(model_path), "type": kind, "sha256": msg.model_sha256,
               "artifact_sha256": artifact_sha256(model_path), "message_label": msg.label,
               "message_details": msg.details, "describe": stats.meta.get("model")},
        data={"path": str(store.path), "sha256": store.sha256, "num_tokens": store.num_tokens,
              "num_documents": store.num_documents, "vocab_size": store.vocab_size,
              "training_store": None if train_store is None else {"path": str(train_store.path),
                                                                   "sha256": train_store.sha256}},
        provenance={"command": " ".join(sys.argv), "seed": seed, "device": device,
                    "samples": samples, "doc_samples": doc_samples})
    cert["stats"] = stats_reference(out, stats_dir_for(out, ".stats"))
    if doc_stats is not None:
        cert["document_stats"] = stats_reference(out, stats_dir_for(out, ".docstats"))
    write_json(out, cert)
    return cert


def stats_reference(cert_path: Path, stats_dir: Path) -> dict[str, str]:
    f = stats_dir / STATS_FILE
    return {"path": str(f.relative_to(cert_path.parent)), "sha256": sha256_file(f)}


def load_stats(cert: dict[str, Any], cert_path: Path, key: str = "stats") -> TokenStats | None:
    ref = cert.get(key)
    if ref is None:
        return None
    path = Path(cert_path).parent / ref["path"]
    if not path.exists():
        raise TokenboundError(f"{cert_path}: its {key} file {path} is missing")
    return TokenStats.load(path)


def summary_lines(cert: dict[str, Any]) -> list[str]:
    """A short human summary of a certificate (printed by `bound`, `verify` and the demo)."""
    inp, terms = cert["inputs"], cert["terms"]
    label = "test-set bound (held-out data, message length 0)" if inp["heldout"] else "generalization bound"
    lines = [
        f"{label}: {cert['bound_bits_per_token']:.3f} bits/token  [{cert['method']}, alpha={inp['alpha']}]",
        f"  = empirical {terms['empirical_bits']:.3f} + complexity {terms['complexity_bits']:.3f}"
        f" + subsampling {terms['subsample_bits']:.3f}",
        f"  random guess: {cert['random_guess_bits']:.3f} bits/token  ->  "
        + ("VACUOUS" if cert["vacuous"] else "non-vacuous"),
        f"  m = {inp['num_tokens']:,} tokens, n = {inp['sample_size']:,} draws ({inp['sampler']}), "
        f"context {inp['context_rule']}, delta = {inp['delta']}, message = {inp['message_bits']:,.0f} bits",
    ]
    for name, b in cert["bounds"].items():
        if name != cert["method"]:
            lines.append(f"  {name}: {b['bound_bits_per_token']:.3f} bits/token")
    tk = cert.get("top_k_error_bounds") or {}
    if tk:
        lines.append("  top-k error bounds: " + ", ".join(f"top-{k} {v:.3f}" for k, v in tk.items()))
    if cert.get("bits_per_byte") is not None:
        lines.append(f"  bits per byte: {cert['bits_per_byte']:.3f}")
    if cert["vacuous"]:
        be = (cert.get("break_even_tokens") or {}).get(cert["method"])
        lines.append("  break-even data size: " + (f"{be:,.0f} tokens" if be and math.isfinite(be)
                                                     else "none (empirical loss alone is above the guess line)"))
    return lines
