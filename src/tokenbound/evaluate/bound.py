"""`tokenbound bound`: score a model on its training tokens, then certify it (docs/scoring.md, docs/theory.md).

The certificate is written next to the statistics it was computed from:
``CERT.json`` and ``CERT.stats/`` (the scorer's shards and ``tokenstats.npz``; ``CERT.docstats/`` for the
document-level baseline). Scoring is resumable: rerunning the same command after an interruption reuses the
finished shards and produces a bit-identical certificate.

Message length: a CompressedModel or Markov model carries its verified code length; any other model (an
uncompressed Run, a Hugging Face directory, a GGUF file) is charged the length of its best lossless archive,
labelled as such. ``heldout=True`` certifies a held-out store with message length 0 (a test-set bound); an
uncompressed Run is then not archived at all (``measure="none"``: only its identity, the hash of its weights).
"""
from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from ..artifacts import (KIND_COMPRESSED, KIND_MARKOV, KIND_RUN, ensure_parent_dir, exclusive_lock, file_inside,
                         path_record, read_manifest, sha256_dir, sha256_file, write_json)
from ..bounds.certificate import certify
from ..bounds.schema import Certificate, CertifyInputs
from ..bounds.stats import TokenStats
from ..data.context import ContextRule
from ..data.store import TokenStore
from ..errors import TokenboundError
from .compressors import compressor_rates
from .control import attach_control, check_control_spec
from .options import BoundOptions
from .shards import STATS_FILE
from ..models.loading import artifact_type, load


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


def message_length(model_path: Path, kind: str, device: str = "cpu", measure: str | None = None) -> MessageLength:
    """The message length of a model artifact, measured from its bitstream files (see module docstring).

    CompressedModel: ``coding.compressed.measured_message_bits``; Markov model: ``models.markov_code.
    measured_message_bits``; anything else: the same measurement on its lossless archive, built here. A manifest
    whose recorded length disagrees with the measurement is refused (one-line TokenboundError naming it).
    ``measure="file"``: a single model file (e.g. a GGUF) taken as its own code, ``coding.archive.
    file_message_bits``. ``measure="none"`` (an uncompressed Run under a test-set certificate, which charges no
    message): 0 bits and the identity of the scored weights, without building the archive. ``details["measure"]``
    records which measurement was used; `tokenbound verify` calls this same function with it to re-check a
    certificate's message length.
    """
    model_path = Path(model_path)
    if measure == "none":
        if kind != KIND_RUN:
            raise TokenboundError(f"message measure 'none' is for an uncompressed Run, not a {kind}")
        from ..coding.hashing import state_sha256
        from ..models.decoders import model_state

        return MessageLength(0.0, "not charged (test-set certificate of an uncompressed Run)", True, {},
                             state_sha256(model_state(load(model_path, device=device))), {"measure": "none"})
    if measure == "file":
        from ..coding.archive import file_message_bits

        bits, breakdown = file_message_bits(model_path)
        return MessageLength(bits, "the model file itself (8·bytes + Elias-gamma prefix)", True, {},
                             sha256_file(model_path), {"measure": "file", "breakdown": breakdown,
                                                       "file_bytes": model_path.stat().st_size})
    if measure is not None:
        raise TokenboundError(f"message measure {measure!r}: only 'file' or 'none' can be asked for")
    if kind == KIND_COMPRESSED:
        from ..coding.compressed import measured_message_bits, read_compressed_manifest

        bits, breakdown = measured_message_bits(model_path)
        man = read_compressed_manifest(model_path)
        return MessageLength(bits, f"compressed ({man['method']})", True,
                             {k: float(v) for k, v in (man.get("extra_bits") or {}).items()},
                             man["decoded_sha256"], {"breakdown": breakdown, "method": man["method"],
                                                     "measure": "compressed",
                                                     "bits_per_coded_param": man.get("bits_per_coded_param")})
    if kind == KIND_MARKOV:
        from ..models.markov_code import measured_message_bits as markov_bits

        bits, breakdown = markov_bits(model_path)
        man = read_manifest(model_path, KIND_MARKOV)
        return MessageLength(float(bits), f"markov (order {man.get('order')}, entropy-coded counts)",
                             True, {}, artifact_sha256(model_path), {"order": man.get("order"),
                                                                     "breakdown": breakdown, "measure": "markov"})
    # An uncompressed model: charge its best lossless archive (verified by decompression), measured from its files.
    from ..coding.compressed import measured_message_bits
    from ..compress.archive import compress_archive

    with tempfile.TemporaryDirectory() as tmp:
        man = compress_archive(model_path, Path(tmp) / "archive", device=device)
        bits, breakdown = measured_message_bits(Path(tmp) / "archive")
    return MessageLength(bits, f"archive of the uncompressed model ({man.get('codec')})",
                         True, {k: float(v) for k, v in (man.get("extra_bits") or {}).items()},
                         man["decoded_sha256"], {"breakdown": breakdown, "measure": "archive", "codec": man.get("codec"),
                                                 "codecs": man.get("codecs")})


def default_context(model, kind: str, model_path: Path) -> str:
    """The model's own context rule: doc-rule over its full context (its order, for a Markov chain)."""
    if kind == KIND_MARKOV:
        order = int(read_manifest(model_path, KIND_MARKOV)["order"])
        return f"doc:{max(order, 1)}"
    if model.max_context is None:
        return "doc:1024"
    return f"doc:{min(int(model.max_context), 1024)}"


def resolve_stores(data: Path, heldout: bool, train_data: Path | None, *, model_path: Path | None = None,
                   kind: str | None = None, assume_unseen: bool = False
                   ) -> tuple[TokenStore, TokenStore | None, dict[str, Any] | None]:
    """(store to certify on, training store if known, how held-out independence was established).

    Every store is checked (hash, id range, index: ``TokenStore.check``) before use. With --heldout, DATA/val
    is used when it exists, and `evaluate.heldout.establish_independence` must show it independent of the
    model (docs/theory.md §10); without it, DATA is the model's training store.
    """
    from .heldout import establish_independence

    store = TokenStore.open(data, check=True)
    if not heldout:
        return store, store, None
    given = TokenStore.open(train_data, check=True, param="train_data") if train_data else None
    target = store.val.check("data") if store.val is not None else store
    record = None
    if model_path is not None:
        record = establish_independence(target, store, model_path, kind, train_data=given,
                                        assume_unseen=assume_unseen)
    train = given if given is not None else (store if target is not store else None)
    return target, train, record


def stats_dir_for(out: Path, suffix: str) -> Path:
    """CERT.json -> CERT.stats (or CERT.docstats) beside it."""
    return out.with_name(out.stem + suffix)


def lock_path_for(out: Path) -> Path:
    """CERT.json -> CERT.json.lock beside it: held by the `bound` that is writing CERT.json and CERT.stats/."""
    return Path(out).with_name(Path(out).name + ".lock")


def _holding_out_lock(func):
    """Run `func` (bound) holding the lock beside its `out`, so a second `bound` on the same --out is refused
    at once instead of redoing the work and racing on the files. Under torchrun only rank 0 takes it (every
    rank of one job calls bound with the same --out)."""
    import functools
    import inspect
    import os

    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        out = Path(signature.bind(*args, **kwargs).arguments["out"])
        if int(os.environ.get("RANK", "0") or 0) != 0:
            return func(*args, **kwargs)
        if out.is_dir():
            raise TokenboundError(f"{out} is a directory; a certificate is a .json file", param="out")
        made = ensure_parent_dir(out, "out")  # a file in the way or no write access: one line, naming `out`
        try:
            with exclusive_lock(lock_path_for(out), out, "out"):
                return func(*args, **kwargs)
        except BaseException:
            for d in made:  # directories created only for the lock: leave nothing behind on failure
                try:
                    d.rmdir()
                except OSError:
                    break
            raise

    return wrapper


@_holding_out_lock
def bound(model_path: Path, data: Path, out: Path, options: BoundOptions | None = None, *, device: str = "cpu",
          batch_size: int = 8, force: bool = False, progress: bool = True, message: MessageLength | None = None,
          **overrides: Any) -> Certificate:
    """Score `model_path` on `data` with `options` and write a certificate to `out` (JSON); return it.

    `overrides` are BoundOptions fields set on top of `options` (e.g. ``bound(m, d, out, samples=300)``).
    `device` and `batch_size` are where and how many rows the model scores (the numbers do not depend on
    them); `message` overrides the message length (used by experiments that already computed it).
    """
    from ..evaluate.score import score
    from .heldout import certificate_assumptions, tokenizer_charge

    unknown = sorted(set(overrides) - {f.name for f in fields(BoundOptions)})
    if unknown:
        raise TypeError(f"bound() got unexpected keyword arguments {unknown}")
    model_path, data, out = Path(model_path), Path(data), Path(out)
    if out.suffix != ".json":
        raise TokenboundError(f"a certificate is a .json file, got {out}", param="out")
    if out.exists() and not force:
        raise TokenboundError(f"{out} already exists (use --force to overwrite)", param="out")
    opts = replace(options or BoundOptions(), **overrides).checked()
    exhaustive = opts.samples == "all"
    kind = artifact_type(model_path)
    store, train_store, independence = resolve_stores(data, opts.heldout, opts.train_data, model_path=model_path,
                                                      kind=kind, assume_unseen=opts.assume_unseen)
    tokenizer_bits = tokenizer_charge(store, opts.heldout)  # {"tokenizer": bits} when fitted on this store's documents
    check_control_spec(opts.control_variate, store.num_tokens if opts.uses_betting else 0)
    msg = message or message_length(model_path, kind, device=device,
                                    measure="none" if opts.heldout and kind == KIND_RUN else None)
    taken = sorted(set(opts.extra_bits) & (set(msg.extra_bits) | set(tokenizer_bits)))
    if taken:
        raise TokenboundError(f"{', '.join(taken)} already charged by the model's message ({msg.label}); "
                              f"use another name", param="extra_bits")
    model = load(model_path, device=device)
    rule = ContextRule.parse(opts.context or default_context(model, kind, model_path))
    samples = rule.num_windows(0, store.num_tokens) if exhaustive else opts.samples

    stats = score(model, store, rule, opts.sampler, samples, opts.seed, out_dir=stats_dir_for(out, ".stats"),
                  batch_size=batch_size, device=device, progress=progress, model_sha256=msg.model_sha256)
    if opts.control_variate != "none" and opts.uses_betting and not exhaustive:
        stats = attach_control(stats, store, opts.control_variate)
        stats.save(stats_dir_for(out, ".stats") / STATS_FILE)
    doc_stats = None
    if opts.doc_samples:
        # non-overlapping windows laid over each sampled document: every token once, one pass per B tokens
        doc_rule = ContextRule.parse(f"doc:{rule.block}/{rule.block}")
        doc_stats = score(model, store, doc_rule, "document", opts.doc_samples, opts.seed + 1,
                          out_dir=stats_dir_for(out, ".docstats"), batch_size=batch_size, device=device,
                          progress=progress, model_sha256=msg.model_sha256)
    inputs = CertifyInputs(
        message_bits=msg.bits, message_prefix_free=msg.prefix_free,
        extra_bits={**msg.extra_bits, **tokenizer_bits, **opts.extra_bits}, delta=opts.delta,
        methods=opts.methods, heldout=opts.heldout,
        num_documents=store.num_documents if doc_stats is not None else None,
        mean_bytes_per_token=store.mean_bytes_per_token, subsample_ci=opts.subsample_ci,
        pilot_draws=opts.pilot_draws, azuma_ci=opts.azuma_ci,
        **({"alpha_grid": tuple(opts.alpha_grid)} if opts.alpha_grid else {}))
    cert = certify(
        stats, inputs, document_stats=doc_stats,
        model={**path_record(model_path, out.parent), "type": kind, "sha256": msg.model_sha256,
               "artifact_sha256": artifact_sha256(model_path), "message_label": msg.label,
               "message_details": msg.details, "describe": stats.meta.get("model")},
        data={**path_record(store.path, out.parent), "sha256": store.sha256, "num_tokens": store.num_tokens,
              "num_documents": store.num_documents, "vocab_size": store.vocab_size,
              "training_store": None if train_store is None else {**path_record(train_store.path, out.parent),
                                                                   "sha256": train_store.sha256},
              "heldout_independence": independence, "tokenizer_fit": store.manifest.get("tokenizer_fit")},
        provenance={"command": " ".join(sys.argv), "seed": opts.seed, "device": device,
                    "samples": samples, "doc_samples": opts.doc_samples})
    extra: dict[str, Any] = {"assumptions": certificate_assumptions(independence, store, tokenizer_bits)}
    rates = compressor_rates(store)  # reference rates of real compressors on the same text (not bounds)
    if rates is not None:
        extra["reference_compressors"] = rates.to_json()
    extra["stats"] = stats_reference(out, stats_dir_for(out, ".stats"))
    if doc_stats is not None:
        extra["document_stats"] = stats_reference(out, stats_dir_for(out, ".docstats"))
    cert = replace(cert, extra=extra)
    write_json(out, cert.to_json())
    return cert


def stats_reference(cert_path: Path, stats_dir: Path) -> dict[str, str]:
    """The certificate's reference to its statistics: a path relative to the certificate's folder, its sha256."""
    f = stats_dir / STATS_FILE
    return {"path": f.relative_to(cert_path.parent).as_posix(), "sha256": sha256_file(f)}


def stats_path(cert: dict[str, Any], cert_path: Path, key: str = "stats") -> Path | None:
    """Where a certificate's `key` statistics are: only a regular file inside the certificate's own folder."""
    ref = cert.get(key)
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise TokenboundError(f"{cert_path}: its {key} entry is not a {{path, sha256}} reference")
    return file_inside(Path(cert_path).parent, ref.get("path"), f"{cert_path}: {key}.path")


def load_stats(cert: dict[str, Any], cert_path: Path, key: str = "stats") -> TokenStats | None:
    path = stats_path(cert, cert_path, key)
    if path is None:
        return None
    if not path.exists():
        raise TokenboundError(f"{cert_path}: its {key} file {path} is missing")
    return TokenStats.load(path)


def summary_lines(cert: Certificate | Mapping[str, Any]) -> list[str]:
    """A short human summary of a certificate (printed by `bound`, `verify` and the demo); a JSON dict is read
    as a Certificate first."""
    from ..report.flat import certificate_numbers

    if not isinstance(cert, Certificate):
        cert = Certificate.from_json(cert)
    v = certificate_numbers(cert)
    label = "test-set bound (held-out data, message length 0)" if v["heldout"] else "generalization bound"
    if v["assumed_unseen"]:
        label = "test-set bound CONDITIONAL on the assumption that the model was not trained on this data " \
                "(message length 0)"
    lines = [
        f"{label}: {v['bound']:.3f} bits/token  [{v['bound_method']}, alpha={v['alpha']}]",
        f"  = empirical {v['empirical']:.3f} + complexity {v['complexity']:.3f} + subsampling {v['subsample']:.3f}",
        f"  random guess: {v['random_guess']:.3f} bits/token  ->  " + ("VACUOUS" if v["vacuous"] else "non-vacuous"),
        f"  m = {v['num_tokens']:,} tokens, n = {v['sample_size']:,} draws ({v['sampler']}), "
        f"context {v['context']}, delta = {v['delta']}, message = {v['message_bits']:,.0f} bits",
    ]
    if cert.inputs.extra_bits:
        paid = ", ".join(f"{k} {b:.3f}" for k, b in cert.inputs.extra_bits.items())
        lines.append(f"  also paid for (bits): {paid}")
    lines += [f"  {a}" for a in cert.extra.get("assumptions") or [] if a.startswith("assumed:")]
    for name in cert.bounds:
        if name != v["bound_method"]:
            lines.append(f"  {name}: {v[name]:.3f} bits/token")
    if cert.top_k:
        # an error rate is at most 1: min(bound, 1) is still valid, and a bound above 1 says nothing
        lines.append("  top-k error bounds: " + ", ".join(
            f"top-{k} {b:.3f}" if b <= 1 else f"top-{k} 1 (vacuous; computed {b:.3f})"
            for k, b in cert.top_k_error_bounds.items()))
    if v["bits_per_byte"] is not None:
        line = f"  bits per byte: {v['bits_per_byte']:.3f}"
        if v["gzip_bits_per_byte"] is not None:
            line += (f"   (same text: gzip -9 {v['gzip_bits_per_byte']:.3f}, xz -9e {v['xz_bits_per_byte']:.3f}; "
                     f"compressors' actual rates, not bounds)")
        lines.append(line)
    if v["vacuous"]:
        be = v["break_even_tokens"]
        lines.append("  break-even data size: " + (f"{be:,.0f} tokens (tokens of the same data at which this bound "
                                                     f"would become non-vacuous)" if be and math.isfinite(be)
                                                     else "none (empirical loss alone is above the guess line)"))
    return lines
