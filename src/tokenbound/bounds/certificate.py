"""Certificates (DESIGN §6, schema "tokenbound.certificate/1"): certify, recompute, compare.

``certify`` is a pure function of a TokenStats and the declared inputs: the same inputs give the same
numbers bit for bit, so ``recompute`` (same code path, inputs read back from the certificate) lets
``verify`` re-check every number in milliseconds.

Paying for the headline. Each method eligible for the headline (those in ``methods``) gets
log2(#eligible) extra prior bits ("method_choice") *before* it is computed, so reporting the smallest
of them is itself covered by the union bound (docs/theory.md §7). The document-level baseline bounds a
different quantity (mean per-document loss) and is never the headline; top-k bounds are separate claims.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import TokenboundError
from .breakeven import break_even_tokens
from .budget import (check_delta, check_delta_split, check_extra_bits, check_message_bits,
                     message_prior_items)
from .document import document_level_bound, resolve_num_documents
from .methods import azuma_method, variance_adaptive_method
from .prefix import choice_bits
from .smoothing import DEFAULT_ALPHA_GRID, check_alpha_grid, random_guess_bits, smoothed_loss_bits
from .stats import TokenStats
from .subsampling import CI_METHODS
from .topk import DEFAULT_TOP_K, top_k_losses
from .variance import DEFAULT_LAMBDA_GRID, check_lambda_grid

SCHEMA = "tokenbound.certificate/1"
HEADLINE_METHODS = ("azuma", "variance_adaptive")
LEGACY_AZUMA_CI = "hoeffding"  # certificates without inputs.azuma_ci were computed with it
SAMPLERS = ("token", "block", "all")  # draws whose mean is unbiased for the token mean, or every position once (docs/theory.md §5)
DOCUMENT_SAMPLERS = ("document",)  # one draw = one document drawn uniformly
KIND_GENERALIZATION = "generalization bound"
KIND_TEST_SET = "test-set bound"
# Top-level keys certify computes; recompute copies every other key (caller-added provenance) verbatim.
COMPUTED_KEYS = ("schema", "kind", "bound_bits_per_token", "method", "random_guess_bits", "vacuous", "terms",
                 "inputs", "bounds", "top_k_error_bounds", "top_k", "bits_per_byte", "break_even_tokens",
                 "model", "data", "provenance")


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    out = tuple(methods)
    if not out:
        raise TokenboundError("methods: at least one bound method is needed")
    for name in out:
        if name not in HEADLINE_METHODS:
            raise TokenboundError(f"methods: unknown method {name!r}; expected some of {HEADLINE_METHODS}")
    if len(set(out)) != len(out):
        raise TokenboundError(f"methods: duplicates in {list(out)}")
    return out


def _check_stats(stats: TokenStats, where: str, samplers: tuple[str, ...] = SAMPLERS) -> tuple[float, int, int]:
    """Validate and return (m, V, n)."""
    if not isinstance(stats, TokenStats):
        raise TokenboundError(f"{where}: expected a TokenStats, got {type(stats).__name__}")
    stats.validate(where)
    if stats.meta["sampler"] not in samplers:
        raise TokenboundError(f"{where}: sampler must be one of {samplers} for this bound, "
                              f"got {stats.meta['sampler']!r}")
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
        raise TokenboundError(f"pilot_draws: expected an integer, got {pilot_draws!r}") from None
    if k != pilot_draws or k < 0 or (k and k > n - 2):
        raise TokenboundError(f"pilot_draws: must be 0 or between 1 and n − 2 = {n - 2}, got {pilot_draws!r}")
    return 0 if exhaustive else k


def _check_top_k(top_k: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(k) for k in top_k)
    except (TypeError, ValueError):
        raise TokenboundError(f"top_k: every k must be an integer >= 1, got {top_k!r}") from None
    if any(k < 1 for k in out) or any(int(k) != k for k in top_k):
        raise TokenboundError(f"top_k: every k must be an integer >= 1, got {list(top_k)}")
    return out


def certify(stats: TokenStats, *, message_bits: float, message_prefix_free: bool = True,
            extra_bits: dict[str, float] | None = None, delta: float = 0.05, delta_split: str | dict = "paper",
            alpha_grid: Sequence[float] = DEFAULT_ALPHA_GRID,
            methods: Sequence[str] = ("azuma", "variance_adaptive"), heldout: bool = False,
            document_stats: TokenStats | None = None, num_documents: int | None = None,
            top_k: Sequence[int] = DEFAULT_TOP_K, mean_bytes_per_token: float | None = None,
            model: dict | None = None, data: dict | None = None, provenance: dict | None = None,
            lambda_grid: Sequence[float] = DEFAULT_LAMBDA_GRID, subsample_ci: str = "best",
            control_variate: bool = True, pilot_draws: int = 0, azuma_ci: str | None = None) -> dict[str, Any]:
    """Compute every bound on `stats` and return a certificate dict (schema "tokenbound.certificate/1").

    Invariants: every bound holds with probability >= 1 − δ (each method separately; the headline too, its
    choice being paid for with log2(len(methods)) bits); every data-dependent choice is itemised in the
    method's ``extra_bits``; ``heldout=True`` certifies a held-out stream (a "test-set bound"): the model was
    fixed before that stream was seen, so the message costs nothing (message bits recorded, 0 used), while
    ``extra_bits`` still pays for choices the caller made on the held-out data. `lambda_grid` and
    `subsample_ci` ("hoeffding" | "maurer_pontil" | "best" | "betting") configure the variance-adaptive method;
    with "betting" and `control_variate`, the stats' control variate (if they carry one) narrows its subsampling
    term (docs/theory.md §5). `azuma_ci` (one of the same, default: `subsample_ci`) is the confidence bound of
    Theorem A's subsampling term, with the control variate under the same conditions; "hoeffding" is the seed
    paper's. `pilot_draws` > 0: α and λ are chosen on draws 0..pilot_draws−1 and each method
    is certified at its choice on the remaining draws, so the subsampling δ is not divided by the grid sizes.
    `stats` must come from the token or block sampler (unbiased token draws); when it is every position
    exactly once (``inputs.exhaustive``) there is no subsampling term. `document_stats` (document sampler:
    one draw per document) adds the document-level baseline over `num_documents` (default: its
    meta["population_documents"]). Raises a one-line TokenboundError on any bad input.
    """
    m, vocab, n = _check_stats(stats, "stats")
    delta = check_delta(delta)
    split = check_delta_split(delta_split)
    grid = check_alpha_grid(alpha_grid)
    lam_grid = check_lambda_grid(lambda_grid)
    methods = _check_methods(methods)
    ks = _check_top_k(top_k)
    bits = check_message_bits(message_bits)
    extras = check_extra_bits(extra_bits)
    if subsample_ci not in CI_METHODS:
        raise TokenboundError(f"subsample_ci: expected one of {CI_METHODS}, got {subsample_ci!r}")
    azuma_ci = subsample_ci if azuma_ci is None else azuma_ci
    if azuma_ci not in CI_METHODS:
        raise TokenboundError(f"azuma_ci: expected one of {CI_METHODS}, got {azuma_ci!r}")
    if mean_bytes_per_token is not None and not (float(mean_bytes_per_token) > 0
                                                 and math.isfinite(float(mean_bytes_per_token))):
        raise TokenboundError(f"mean_bytes_per_token: must be > 0, got {mean_bytes_per_token!r}")

    base_items = message_prior_items(0.0 if heldout else bits, True if heldout else bool(message_prefix_free))
    base_items.update(extras)
    alpha_items = {**base_items, "alpha_grid": choice_bits(len(grid))}
    method_bits = choice_bits(len(methods))
    exhaustive = is_exhaustive(stats)
    if exhaustive:
        stats = per_position(stats)
        n = stats.num_draws
    pilot = _check_pilot(pilot_draws, n, exhaustive)
    use_control = control_variate and subsample_ci == "betting"
    azuma_control = control_variate and azuma_ci == "betting"

    def method_bounds(sample: TokenStats, alphas: np.ndarray, lams: np.ndarray, choices: int,
                      projected: int | None = None):
        """Each method's entry on `sample`, evaluated on the given α and λ grids (the prior pays for the full ones).

        `projected`: `sample` is a pilot; subsampling terms are forecast for that many certifying draws."""
        losses = smoothed_loss_bits(sample.prob, alphas, vocab)
        control = sample.control_variate() if use_control or azuma_control else None
        out: dict[str, tuple] = {}
        for name in methods:
            items = {**alpha_items, "method_choice": method_bits}
            if name == "azuma":
                out[name] = azuma_method(losses, sample.draw, sample.num_draws, alphas, vocab, items, delta, split,
                                         m, choices, exhaustive, projected, azuma_ci,
                                         None if exhaustive or not azuma_control else control)
            else:
                items["lambda_grid"] = choice_bits(len(lam_grid))
                out[name] = variance_adaptive_method(losses, sample.entropy_bits, sample.draw, sample.num_draws,
                                                     alphas, vocab, items, delta, split, m, lams, subsample_ci,
                                                     choices, exhaustive, control if use_control else None,
                                                     projected)
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
            lams = np.array([pick["lambda"]]) if "lambda" in pick else lam_grid
            entry, at = method_bounds(rest, np.array([pick["alpha"]]), lams, len(methods))[name]
            entry["pilot"] = {"draws": pilot, "alpha": pick["alpha"], "lambda": pick.get("lambda"),
                              "forecast_bound_bits_per_token": pick["bound_bits_per_token"]}
            results[name] = (entry, at)
    else:
        results = method_bounds(stats, grid, lam_grid, len(grid) * len(methods))
    bounds = {name: results[name][0] for name in methods}
    bound_at = {name: results[name][1] for name in methods}

    num_docs = None
    if document_stats is not None:
        _, doc_vocab, _ = _check_stats(document_stats, "document_stats", DOCUMENT_SAMPLERS)
        if doc_vocab != vocab:
            raise TokenboundError(f"document_stats: vocab_size {doc_vocab} differs from the token stats' {vocab}")
        num_docs = resolve_num_documents(document_stats, num_documents)
        bounds["document_level"] = document_level_bound(document_stats, num_docs, grid, vocab, alpha_items,
                                                        delta, split)

    headline = min(methods, key=lambda name: (bounds[name]["bound_bits_per_token"], methods.index(name)))
    best = bounds[headline]
    guess = random_guess_bits(vocab)

    topk_entries = {}
    topk_items = dict(base_items)  # no α and no method choice: one fixed statement per k
    if ks:
        flags = top_k_losses(stats.rank, ks)
        for j, k in enumerate(ks):
            entry, _ = azuma_method(flags[j:j + 1], stats.draw, n, None, None, topk_items, delta, split, m,
                                    exhaustive=exhaustive)
            if "rank_rule" in stats.meta:  # tie rule of the prediction sets (docs/theory.md §8); old stats lack it
                entry["rank_rule"] = stats.meta["rank_rule"]
            topk_entries[str(k)] = entry

    cert: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": KIND_TEST_SET if heldout else KIND_GENERALIZATION,
        "bound_bits_per_token": best["bound_bits_per_token"],
        "method": headline,
        "random_guess_bits": guess,
        "vacuous": bool(best["bound_bits_per_token"] >= guess),
        "terms": {k: best["terms"][k] for k in ("empirical_bits", "complexity_bits", "subsample_bits")},
        "inputs": {
            "num_tokens": int(stats.meta["population_tokens"]), "sample_size": n, "num_positions": len(stats),
            "vocab_size": vocab, "exhaustive": exhaustive, "delta": delta, "delta_split": split,
            "alpha": best["alpha"], "alpha_grid": [float(a) for a in grid],
            "lambda_grid": [float(x) for x in lam_grid], "subsample_ci": subsample_ci, "azuma_ci": azuma_ci,
            "control_variate": bool(control_variate), "pilot_draws": pilot,
            "control_variate_used": (dict(stats.meta["control_variate"])
                                     if (use_control or (azuma_control and "azuma" in methods))
                                     and stats.control_bits is not None and not exhaustive else None),
            "message_bits": bits, "message_prefix_free": bool(message_prefix_free), "extra_bits": extras,
            "methods": list(methods), "top_k": list(ks), "num_documents": num_docs,
            "mean_bytes_per_token": None if mean_bytes_per_token is None else float(mean_bytes_per_token),
            "context_rule": stats.meta["context_rule"], "sampler": stats.meta["sampler"],
            "seed": stats.meta["seed"], "heldout": bool(heldout),
        },
        "bounds": bounds,
        "top_k_error_bounds": {k: e["bound_bits_per_token"] for k, e in topk_entries.items()},
        "top_k": topk_entries,
        "bits_per_byte": (None if mean_bytes_per_token is None
                          else best["bound_bits_per_token"] / float(mean_bytes_per_token)),
        "break_even_tokens": {name: break_even_tokens(bound_at[name], guess) for name in methods},
        "model": dict(model or {}), "data": dict(data or {}), "provenance": dict(provenance or {}),
    }
    return cert


def recompute(certificate: Mapping[str, Any], stats: TokenStats,
              document_stats: TokenStats | None = None) -> dict[str, Any]:
    """Rerun `certify` with the inputs recorded in `certificate` on `stats`; copy caller-added keys verbatim."""
    if certificate.get("schema") != SCHEMA:
        raise TokenboundError(f"certificate: schema is {certificate.get('schema')!r}, expected {SCHEMA!r}")
    try:
        inp = certificate["inputs"]
        new = certify(
            stats, message_bits=inp["message_bits"], message_prefix_free=inp["message_prefix_free"],
            extra_bits=inp["extra_bits"], delta=inp["delta"], delta_split=inp["delta_split"],
            alpha_grid=inp["alpha_grid"], methods=inp["methods"], heldout=inp["heldout"],
            document_stats=document_stats, num_documents=inp["num_documents"], top_k=inp["top_k"],
            mean_bytes_per_token=inp["mean_bytes_per_token"], model=certificate.get("model"),
            data=certificate.get("data"), provenance=certificate.get("provenance"),
            lambda_grid=inp["lambda_grid"], subsample_ci=inp["subsample_ci"],
            control_variate=inp["control_variate"], pilot_draws=inp["pilot_draws"],
            azuma_ci=inp.get("azuma_ci", LEGACY_AZUMA_CI))
    except KeyError as e:
        raise TokenboundError(f"certificate: missing input {e.args[0]!r}") from None
    if "azuma_ci" not in inp:
        # Written before Theorem A's confidence bound was an input: it was always Hoeffding, and the certificate
        # names it nowhere, so the recomputation drops the fields that record it.
        new["inputs"].pop("azuma_ci")
        for entry in (new["bounds"].get("azuma"),):
            if entry is not None:
                entry.pop("subsample_ci", None)
                entry.pop("control_variate", None)
    for key, value in certificate.items():
        if key not in COMPUTED_KEYS:
            new[key] = value
    return new


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


def compare(certificate: Mapping[str, Any], recomputed: Mapping[str, Any], rtol: float = 1e-12) -> list[str]:
    """Human-readable differences between a certificate and its recomputation; [] when they agree."""
    out: list[str] = []
    _differences("", certificate, recomputed, rtol, out)
    return out
