"""Certificates: certify, recompute, compare (the typed certificate and its JSON form: schema.py).

``certify`` is a pure function of a TokenStats and the declared inputs (``CertifyInputs``): the same inputs
give the same numbers bit for bit, so ``recompute`` (``certify`` on the inputs read back from the certificate)
lets ``verify`` re-check every number in milliseconds.

Paying for the headline. Each method eligible for the headline (those in ``methods``) gets
log2(#eligible) extra prior bits ("method_choice") *before* it is computed, so reporting the smallest
of them is itself covered by the union bound (docs/theory.md §7). The document-level baseline bounds a
different quantity (mean per-document loss) and is never the headline; top-k bounds are separate claims.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import TokenboundError
from .breakeven import break_even_tokens
from .budget import (check_delta, check_delta_split, check_extra_bits, check_message_bits,
                     message_prior_items)
from .document import document_level_bound, resolve_num_documents
from .methods import azuma_method, variance_adaptive_method
from .prefix import choice_bits
from .schema import (HEADLINE_METHODS, KIND_GENERALIZATION, KIND_TEST_SET, Certificate, CertifyInputs, MethodBound,
                     Pilot, Sample, TopKBound, check_schema, extra_keys)
from .smoothing import check_alpha_grid, random_guess_bits, smoothed_loss_bits
from .stats import CONTROL_META, TokenStats
from .subsampling import CI_METHODS
from .topk import top_k_losses
from .variance import check_lambda_grid

SAMPLERS = ("token", "block", "all")  # draws whose mean is unbiased for the token mean, or every position once (docs/theory.md §5)
DOCUMENT_SAMPLERS = ("document",)  # one draw = one document drawn uniformly


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    out = tuple(methods)
    if not out:
        raise TokenboundError("at least one bound method is needed", param="methods")
    for name in out:
        if name not in HEADLINE_METHODS:
            raise TokenboundError(f"unknown method {name!r}; expected some of {HEADLINE_METHODS}", param="methods")
    if len(set(out)) != len(out):
        raise TokenboundError(f"duplicates in {list(out)}", param="methods")
    return out


def _check_stats(stats: TokenStats, where: str, samplers: tuple[str, ...] = SAMPLERS) -> tuple[float, int, int]:
    """Validate and return (m, V, n)."""
    if not isinstance(stats, TokenStats):
        raise TokenboundError(f"expected a TokenStats, got {type(stats).__name__}", param=where)
    stats.validate(where)
    if stats.meta["sampler"] not in samplers:
        raise TokenboundError(f"sampler must be one of {samplers} for this bound, got {stats.meta['sampler']!r}",
                              param=where)
    return float(stats.meta["population_tokens"]), int(stats.meta["vocab_size"]), stats.num_draws


def is_exhaustive(stats: TokenStats) -> bool:
    """True when the scored positions are every one of the m positions exactly once (then R̂_n = R̂ exactly).

    The token sampler reaches it by chance (n = m distinct draws); the ``all`` sampler by construction (every
    window of the rule once, data/sampling.py). It is a property of the sampler's outcome only (independent of
    the data), so using it to drop the subsampling term and give all of δ to the main bound is legitimate
    (docs/theory.md §5). The document sampler never qualifies: it scores documents alone, another rule.
    """
    m = int(stats.meta["population_tokens"])
    if stats.meta["sampler"] not in ("token", "all") or len(stats) != m:
        return False
    if stats.meta["sampler"] == "token" and stats.num_draws != m:
        return False
    return bool(np.array_equal(np.sort(stats.positions), np.arange(m)))


def per_position(stats: TokenStats) -> TokenStats:
    """The same statistics with every position its own draw: under exhaustion the bound is about the token
    mean R̂, not the mean of window means (windows score different numbers of positions)."""
    if stats.meta["sampler"] == "token":
        return stats
    return TokenStats(stats.positions, stats.prob, stats.rank, stats.entropy_bits,
                      np.arange(len(stats), dtype=np.int64), meta=stats.meta, control_bits=stats.control_bits)


def default_pilot_draws(samples: int) -> int:
    """A tenth of the draws choose α and λ (docs/theory.md §5); below 200 draws every draw certifies."""
    return samples // 10 if samples >= 200 else 0


def _check_pilot(pilot_draws: int, n: int, exhaustive: bool) -> int:
    try:
        k = int(pilot_draws)
    except (TypeError, ValueError):
        raise TokenboundError(f"expected an integer, got {pilot_draws!r}", param="pilot_draws") from None
    if k != pilot_draws or k < 0 or (k and k > n - 2):
        raise TokenboundError(f"must be 0 or between 1 and n − 2 = {n - 2}, got {pilot_draws!r}", param="pilot_draws")
    return 0 if exhaustive else k


def _check_top_k(top_k: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(k) for k in top_k)
    except (TypeError, ValueError):
        raise TokenboundError(f"every k must be an integer >= 1, got {top_k!r}", param="top_k") from None
    if any(k < 1 for k in out) or any(int(k) != k for k in top_k):
        raise TokenboundError(f"every k must be an integer >= 1, got {list(top_k)}", param="top_k")
    return out


def _check_inputs(inputs: CertifyInputs) -> CertifyInputs:
    """`inputs` checked and resolved as the certificate records them (grids as floats, azuma_ci named)."""
    if not isinstance(inputs, CertifyInputs):
        raise TokenboundError(f"expected a CertifyInputs, got {type(inputs).__name__}", param="inputs")
    subsample_ci = inputs.subsample_ci
    if subsample_ci not in CI_METHODS:
        raise TokenboundError(f"expected one of {CI_METHODS}, got {subsample_ci!r}", param="subsample_ci")
    azuma_ci = subsample_ci if inputs.azuma_ci is None else inputs.azuma_ci
    if azuma_ci not in CI_METHODS:
        raise TokenboundError(f"expected one of {CI_METHODS}, got {azuma_ci!r}", param="azuma_ci")
    per_byte = inputs.mean_bytes_per_token
    if per_byte is not None and not (float(per_byte) > 0 and math.isfinite(float(per_byte))):
        raise TokenboundError(f"must be > 0, got {per_byte!r}", param="mean_bytes_per_token")
    return replace(
        inputs, delta=check_delta(inputs.delta), delta_split=check_delta_split(inputs.delta_split),
        alpha_grid=tuple(float(a) for a in check_alpha_grid(inputs.alpha_grid)),
        lambda_grid=tuple(float(x) for x in check_lambda_grid(inputs.lambda_grid)),
        methods=_check_methods(inputs.methods), top_k=_check_top_k(inputs.top_k),
        message_bits=check_message_bits(inputs.message_bits), extra_bits=check_extra_bits(inputs.extra_bits),
        message_prefix_free=bool(inputs.message_prefix_free), heldout=bool(inputs.heldout),
        control_variate=bool(inputs.control_variate), azuma_ci=azuma_ci,
        mean_bytes_per_token=None if per_byte is None else float(per_byte))


def certify(stats: TokenStats, inputs: CertifyInputs, *, document_stats: TokenStats | None = None,
            model: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
            provenance: Mapping[str, Any] | None = None) -> Certificate:
    """Compute every bound on `stats` and return the Certificate (``to_json()``: schema "tokenbound.certificate/1").

    Invariants: every bound holds with probability >= 1 − δ (each method separately; the headline too, its
    choice being paid for with log2(len(methods)) bits); every data-dependent choice is itemised in the
    method's ``extra_bits``; ``inputs.heldout`` certifies a held-out stream (a "test-set bound"): the model was
    fixed before that stream was seen, so the message costs nothing (message bits recorded, 0 used), while
    ``extra_bits`` still pays for choices the caller made on the held-out data. `lambda_grid` and
    `subsample_ci` ("hoeffding" | "maurer_pontil" | "best" | "betting") configure the variance-adaptive method;
    with "betting" and `control_variate`, the stats' control variate (if they carry one) narrows its subsampling
    term (docs/theory.md §5). `azuma_ci` (one of the same, default: `subsample_ci`) is the confidence bound of
    Theorem A's subsampling term, with the control variate under the same conditions; "hoeffding" is the seed
    paper's. `pilot_draws` > 0: α and λ are chosen on draws 0..pilot_draws−1 and each method
    is certified at its choice on the remaining draws, so the subsampling δ is not divided by the grid sizes.
    `stats` must come from the token or block sampler (unbiased token draws); when it is every position
    exactly once (``sample.exhaustive``) there is no subsampling term. `document_stats` (document sampler:
    one draw per document) adds the document-level baseline over `num_documents` (default: its
    meta["population_documents"]). The certificate records the inputs resolved (``certificate.inputs``), so
    ``certify(stats, certificate.inputs, ...)`` recomputes it exactly. Raises a one-line TokenboundError naming
    the parameter on any bad input.
    """
    m, vocab, n = _check_stats(stats, "stats")
    inputs = _check_inputs(inputs)
    methods, grid, lam_grid = inputs.methods, np.asarray(inputs.alpha_grid), np.asarray(inputs.lambda_grid)
    delta, split = inputs.delta, inputs.delta_split

    base_items = message_prior_items(0.0 if inputs.heldout else inputs.message_bits,
                                     True if inputs.heldout else inputs.message_prefix_free)
    base_items.update(inputs.extra_bits)
    alpha_items = {**base_items, "alpha_grid": choice_bits(len(grid))}
    method_bits = choice_bits(len(methods))
    exhaustive = is_exhaustive(stats)
    if exhaustive:
        stats = per_position(stats)
        n = stats.num_draws
    pilot = _check_pilot(inputs.pilot_draws, n, exhaustive)
    use_control = inputs.control_variate and inputs.subsample_ci == "betting"
    azuma_control = inputs.control_variate and inputs.azuma_ci == "betting"

    def method_bounds(sample: TokenStats, alphas: np.ndarray, lams: np.ndarray, choices: int,
                      projected: int | None = None) -> dict[str, tuple[MethodBound, Any]]:
        """Each method's bound on `sample`, evaluated on the given α and λ grids (the prior pays for the full ones).

        `projected`: `sample` is a pilot; subsampling terms are forecast for that many certifying draws."""
        losses = smoothed_loss_bits(sample.prob, alphas, vocab)
        control = sample.control_variate() if use_control or azuma_control else None
        common = dict(draw=sample.draw, num_draws=sample.num_draws, alpha_grid=alphas, vocab_size=vocab,
                      delta=delta, split=split, subsample_choices=choices, exhaustive=exhaustive,
                      projected_draws=projected)
        out: dict[str, tuple[MethodBound, Any]] = {}
        for name in methods:
            items = {**alpha_items, "method_choice": method_bits}
            if name == "azuma":
                out[name] = azuma_method(losses, **common, prior_items=items, num_units=m, ci=inputs.azuma_ci,
                                         control=None if exhaustive or not azuma_control else control)
            else:
                items["lambda_grid"] = choice_bits(len(lam_grid))
                out[name] = variance_adaptive_method(losses, **common, entropy_bits=sample.entropy_bits,
                                                     prior_items=items, num_tokens=m, lambda_grid=lams,
                                                     ci=inputs.subsample_ci,
                                                     control=control if use_control else None)
        return out

    if pilot:
        # α and λ are chosen on the first `pilot` draws and certified on the others, which are independent of
        # that choice given the data: only the martingale part pays for it (prior bits); each subsampling
        # statement is about one fixed (α, λ), so δ2 is split only among the methods (docs/theory.md §5).
        # The choice minimises the bound forecast for the certifying draws, not the pilot's own (far wider) one.
        chosen = method_bounds(stats.draws_between(0, pilot), grid, lam_grid, len(methods), projected=n - pilot)
        rest = stats.draws_between(pilot, n)
        results = {}
        for name in methods:
            pick = chosen[name][0]
            lam = getattr(pick, "lambda_", None)
            lams = lam_grid if lam is None else np.array([lam])
            entry, at = method_bounds(rest, np.array([pick.alpha]), lams, len(methods))[name]
            results[name] = (replace(entry, pilot=Pilot(pilot, pick.alpha, lam, pick.bound_bits_per_token)), at)
    else:
        results = method_bounds(stats, grid, lam_grid, len(grid) * len(methods))
    bounds: dict[str, MethodBound] = {name: results[name][0] for name in methods}
    if not inputs.azuma_ci_recorded and "azuma" in bounds:
        # written before Theorem A's confidence bound was an input (it was Hoeffding's): named nowhere
        bounds["azuma"] = replace(bounds["azuma"], subsample_ci=None, control_variate=None)

    num_docs = None
    if document_stats is not None:
        _, doc_vocab, _ = _check_stats(document_stats, "document_stats", DOCUMENT_SAMPLERS)
        if doc_vocab != vocab:
            raise TokenboundError(f"vocab_size {doc_vocab} differs from the token stats' {vocab}",
                                  param="document_stats")
        num_docs = resolve_num_documents(document_stats, inputs.num_documents)
        bounds["document_level"] = document_level_bound(document_stats, num_docs, grid, vocab, alpha_items,
                                                        delta, split)

    headline = min(methods, key=lambda name: (bounds[name].bound_bits_per_token, methods.index(name)))
    best = bounds[headline].bound_bits_per_token
    guess = random_guess_bits(vocab)

    top_k: dict[int, TopKBound] = {}
    if inputs.top_k:
        flags = top_k_losses(stats.rank, inputs.top_k)
        for j, k in enumerate(inputs.top_k):
            # no α and no method choice: one fixed statement per k
            entry, _ = azuma_method(flags[j:j + 1], draw=stats.draw, num_draws=n, alpha_grid=None, vocab_size=None,
                                    prior_items=dict(base_items), delta=delta, split=split, num_units=m,
                                    exhaustive=exhaustive)
            # the tie rule of the prediction sets (docs/theory.md §8); old stats lack it
            top_k[k] = entry.specialised(TopKBound, rank_rule=stats.meta.get("rank_rule"))

    control_used = ((use_control or (azuma_control and "azuma" in methods)) and stats.control_bits is not None
                    and not exhaustive)
    return Certificate(
        inputs=replace(inputs, pilot_draws=pilot, num_documents=num_docs),
        sample=Sample(num_tokens=int(stats.meta["population_tokens"]), sample_size=n, num_positions=len(stats),
                      vocab_size=vocab, exhaustive=exhaustive, context_rule=stats.meta["context_rule"],
                      sampler=stats.meta["sampler"], seed=stats.meta["seed"],
                      control_variate_used=_control_summary(stats.meta["control_variate"]) if control_used else None),
        kind=KIND_TEST_SET if inputs.heldout else KIND_GENERALIZATION, method=headline, bound_bits_per_token=best,
        random_guess_bits=guess, vacuous=bool(best >= guess), bounds=bounds, top_k=top_k,
        bits_per_byte=None if inputs.mean_bytes_per_token is None else best / inputs.mean_bytes_per_token,
        break_even_tokens={name: break_even_tokens(results[name][1], guess) for name in methods},
        model=dict(model or {}), data=dict(data or {}), provenance=dict(provenance or {}))


def _control_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The control variate's summary in the order attach_control writes it, however the statistics were stored
    (a saved TokenStats reads its metadata back in another order): a recomputed certificate's bytes are the same."""
    return {**{k: summary[k] for k in CONTROL_META if k in summary}, **summary}


def recompute(certificate: Certificate | Mapping[str, Any], stats: TokenStats,
              document_stats: TokenStats | None = None) -> Certificate:
    """`certify` rerun on `stats` with the inputs a certificate records; the caller's keys are carried verbatim.

    `certificate` is a Certificate or its JSON dict; of a dict only the schema, the inputs and the caller's
    records are read, so a certificate whose numbers were altered still recomputes (and `compare` says where).
    """
    if isinstance(certificate, Certificate):
        cert = certificate
        inputs, records, extra = cert.inputs, (cert.model, cert.data, cert.provenance), cert.extra
    else:
        check_schema(certificate)
        if "inputs" not in certificate:
            raise TokenboundError("certificate: missing 'inputs'")
        inputs = CertifyInputs.from_json(certificate["inputs"])
        records = tuple(certificate.get(k) for k in ("model", "data", "provenance"))
        extra = extra_keys(certificate)
    model, data, provenance = records
    new = certify(stats, inputs, document_stats=document_stats, model=model, data=data, provenance=provenance)
    return replace(new, extra=dict(extra))

def _differences(path: str, a: Any, b: Any, rtol: float, out: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{sub}: only in the certificate")
            elif key not in a:
                out.append(f"{sub}: only in the recomputed certificate")
            else:
                _differences(sub, a[key], b[key], rtol, out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                _differences(f"{path}[{i}]", x, y, rtol, out)
    elif (isinstance(a, (int, float)) and isinstance(b, (int, float))
          and not isinstance(a, bool) and not isinstance(b, bool)):
        if not (a == b or abs(a - b) <= rtol * max(abs(a), abs(b))):
            out.append(f"{path}: {a!r} vs recomputed {b!r}")
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: {a!r} vs recomputed {b!r}")


def compare(certificate: Certificate | Mapping[str, Any], recomputed: Certificate | Mapping[str, Any],
            rtol: float = 1e-12) -> list[str]:
    """Human-readable differences between a certificate and its recomputation (each a Certificate or its JSON
    dict, compared in JSON form); [] when they agree."""
    out: list[str] = []
    _differences("", _as_json(certificate), _as_json(recomputed), rtol, out)
    return out


def _as_json(cert: Certificate | Mapping[str, Any]) -> Mapping[str, Any]:
    return cert.to_json() if isinstance(cert, Certificate) else cert
