"""The certificate as typed values, and its JSON form (schema "tokenbound.certificate/1"; docs/theory.md).

``CertifyInputs`` is everything `certify` is told (the declared inputs); ``Certificate`` is what it returns:
those inputs as resolved and recorded, facts about the sample, one ``MethodBound`` per method, one
``TopKBound`` per k. ``to_json`` writes exactly the schema's dict (key order included, so a recomputed
certificate serialises byte for byte like the original); ``from_json`` reads it back. Keys a caller adds to a
certificate (its statistics files, assumptions, reference compressors, ...) are kept verbatim in
``Certificate.extra``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..errors import TokenboundError
from .smoothing import DEFAULT_ALPHA_GRID
from .topk import DEFAULT_TOP_K
from .variance import DEFAULT_LAMBDA_GRID

SCHEMA = "tokenbound.certificate/1"
HEADLINE_METHODS = ("azuma", "variance_adaptive")
LEGACY_AZUMA_CI = "hoeffding"  # certificates without inputs.azuma_ci were computed with it
KIND_GENERALIZATION = "generalization bound"
KIND_TEST_SET = "test-set bound"
# Top-level keys certify computes; every other key of a certificate is the caller's and is carried verbatim.
COMPUTED_KEYS = ("schema", "kind", "bound_bits_per_token", "method", "random_guess_bits", "vacuous", "terms",
                 "inputs", "bounds", "top_k_error_bounds", "top_k", "bits_per_byte", "break_even_tokens",
                 "model", "data", "provenance")
TERM_KEYS = ("empirical_bits", "complexity_bits", "subsample_bits")


def _get(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise TokenboundError(f"certificate: {where} is not an object")
    try:
        return d[key]
    except KeyError:
        raise TokenboundError(f"certificate: missing {where}.{key}" if where else
                              f"certificate: missing {key!r}") from None


@dataclass(frozen=True)
class CertifyInputs:
    """Every declared input of `certify` (docs/theory.md §5, §7, §12 for what each one means).

    `azuma_ci` None: the same as `subsample_ci`. `pilot_draws`: draws that choose α and λ before the rest
    certify them (0: none). `num_documents` None: the document statistics' own count. `azuma_ci_recorded`
    False only for certificates written before `azuma_ci` was an input: they were computed with Hoeffding
    (LEGACY_AZUMA_CI) and name it nowhere, so their recomputation names it nowhere either.
    """

    message_bits: float
    message_prefix_free: bool = True
    extra_bits: Mapping[str, float] = field(default_factory=dict)
    delta: float = 0.05
    delta_split: str | Mapping[str, float] = "paper"
    alpha_grid: tuple[float, ...] = DEFAULT_ALPHA_GRID
    lambda_grid: tuple[float, ...] = DEFAULT_LAMBDA_GRID
    methods: tuple[str, ...] = HEADLINE_METHODS
    heldout: bool = False
    num_documents: int | None = None
    top_k: tuple[int, ...] = DEFAULT_TOP_K
    mean_bytes_per_token: float | None = None
    subsample_ci: str = "best"
    azuma_ci: str | None = None
    control_variate: bool = True
    pilot_draws: int = 0
    azuma_ci_recorded: bool = True

    @classmethod
    def from_json(cls, inputs: Mapping[str, Any]) -> "CertifyInputs":
        """The declared inputs recorded in a certificate's "inputs" (missing one: a one-line error)."""
        if not isinstance(inputs, Mapping):
            raise TokenboundError("certificate: its inputs are not an object")
        try:
            recorded = "azuma_ci" in inputs
            return cls(message_bits=inputs["message_bits"], message_prefix_free=inputs["message_prefix_free"],
                       extra_bits=inputs["extra_bits"], delta=inputs["delta"], delta_split=inputs["delta_split"],
                       alpha_grid=tuple(inputs["alpha_grid"]), lambda_grid=tuple(inputs["lambda_grid"]),
                       methods=tuple(inputs["methods"]), heldout=inputs["heldout"],
                       num_documents=inputs["num_documents"], top_k=tuple(inputs["top_k"]),
                       mean_bytes_per_token=inputs["mean_bytes_per_token"], subsample_ci=inputs["subsample_ci"],
                       azuma_ci=inputs["azuma_ci"] if recorded else LEGACY_AZUMA_CI,
                       control_variate=inputs["control_variate"], pilot_draws=inputs["pilot_draws"],
                       azuma_ci_recorded=recorded)
        except KeyError as e:
            raise TokenboundError(f"certificate: missing input {e.args[0]!r}") from None
        except TypeError as e:
            raise TokenboundError(f"certificate: malformed inputs ({e})") from None


@dataclass(frozen=True)
class Sample:
    """What the certified statistics were: population, draws, the rule and sampler, the control variate used."""

    num_tokens: int
    sample_size: int
    num_positions: int
    vocab_size: int
    exhaustive: bool
    context_rule: str
    sampler: str
    seed: Any
    control_variate_used: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Terms:
    """bound = empirical + complexity + subsample; the variance-adaptive bound splits complexity in two."""

    empirical_bits: float
    complexity_bits: float
    subsample_bits: float
    occam_bits: float | None = None
    variance_bits: float | None = None

    def to_json(self, headline_only: bool = False) -> dict[str, float]:
        out = {k: getattr(self, k) for k in TERM_KEYS}
        if not headline_only:
            out.update({k: getattr(self, k) for k in ("occam_bits", "variance_bits") if getattr(self, k) is not None})
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> "Terms":
        return cls(*(_get(d, k, where) for k in TERM_KEYS), occam_bits=d.get("occam_bits"),
                   variance_bits=d.get("variance_bits"))


@dataclass(frozen=True)
class LossRange:
    """[L_min, L_max] of the smoothed loss at the chosen α, and Δ = L_max − L_min (bits)."""

    min: float
    max: float
    range: float

    def to_json(self) -> dict[str, float]:
        return {"min": self.min, "max": self.max, "range": self.range}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> "LossRange":
        return cls(*(_get(d, k, where) for k in ("min", "max", "range")))


@dataclass(frozen=True)
class Pilot:
    """The pilot draws' choice of α (and λ) and the bound they forecast for the certifying draws."""

    draws: int
    alpha: float
    lambda_: float | None
    forecast_bound_bits_per_token: float

    def to_json(self) -> dict[str, Any]:
        return {"draws": self.draws, "alpha": self.alpha, "lambda": self.lambda_,
                "forecast_bound_bits_per_token": self.forecast_bound_bits_per_token}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> "Pilot":
        return cls(_get(d, "draws", where), _get(d, "alpha", where), _get(d, "lambda", where),
                   _get(d, "forecast_bound_bits_per_token", where))


@dataclass(frozen=True)
class MethodBound:
    """One method's bound (Theorem A with a subsampling confidence bound: the Azuma method; docs/theory.md §5).

    `alpha` None: 0-1 losses (top-k). `subsample_ci` / `control_variate` None: not recorded (top-k, the
    document-level baseline, certificates from before Theorem A's confidence bound was an input).
    """

    bound_bits_per_token: float
    terms: Terms
    alpha: float | None
    loss_range_bits: LossRange
    prior_bits: float
    extra_bits: Mapping[str, float]
    delta_shares: Mapping[str, float]
    subsample_choices: int
    num_units: float
    sample_size: int
    per_alpha_bound_bits: tuple[float, ...]
    subsample_ci: str | None = None
    control_variate: bool | None = None
    pilot: Pilot | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"bound_bits_per_token": self.bound_bits_per_token, "terms": self.terms.to_json(),
               "alpha": self.alpha, "loss_range_bits": self.loss_range_bits.to_json(),
               "prior_bits": self.prior_bits, "extra_bits": dict(self.extra_bits),
               "delta_shares": dict(self.delta_shares), "subsample_choices": self.subsample_choices,
               "num_units": self.num_units, "sample_size": self.sample_size,
               "per_alpha_bound_bits": list(self.per_alpha_bound_bits)}
        if self.subsample_ci is not None:
            out["subsample_ci"] = self.subsample_ci
        if self.control_variate is not None:
            out["control_variate"] = self.control_variate
        out.update(self._own_json())
        if self.pilot is not None:
            out["pilot"] = self.pilot.to_json()
        return out

    def _own_json(self) -> dict[str, Any]:
        """A subclass's own fields, written after the common ones."""
        return {}

    def specialised(self, cls: type["MethodBound"], **own: Any) -> "MethodBound":
        """The same bound as the subclass `cls` (a top-k or document-level bound) with its own fields."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(MethodBound)}, **own)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> "MethodBound":
        common = dict(
            bound_bits_per_token=_get(d, "bound_bits_per_token", where),
            terms=Terms.from_json(_get(d, "terms", where), f"{where}.terms"), alpha=_get(d, "alpha", where),
            loss_range_bits=LossRange.from_json(_get(d, "loss_range_bits", where), f"{where}.loss_range_bits"),
            prior_bits=_get(d, "prior_bits", where), extra_bits=dict(_get(d, "extra_bits", where)),
            delta_shares=dict(_get(d, "delta_shares", where)),
            subsample_choices=_get(d, "subsample_choices", where), num_units=_get(d, "num_units", where),
            sample_size=_get(d, "sample_size", where),
            per_alpha_bound_bits=tuple(_get(d, "per_alpha_bound_bits", where)),
            subsample_ci=d.get("subsample_ci"), control_variate=d.get("control_variate"),
            pilot=None if d.get("pilot") is None else Pilot.from_json(d["pilot"], f"{where}.pilot"))
        own = {f.name: d.get(f.name.rstrip("_")) for f in fields(cls) if f.name not in common}
        return cls(**common, **own)


@dataclass(frozen=True)
class VarianceAdaptiveBound(MethodBound):
    """The variance-adaptive bound (Theorem B; docs/theory.md §6): also λ and the centre's mean squared deviation."""

    lambda_: float = 0.0
    mean_sq_deviation_bits2: float = 0.0
    centre: str = "entropy_bits clipped to [L_min, L_max]"
    penalty: str = "lambda*y - ln(1 + lambda*y)"

    def to_json(self) -> dict[str, Any]:
        base = super().to_json()
        head = {k: base.pop(k) for k in ("bound_bits_per_token", "terms", "alpha")}
        own = {"lambda": self.lambda_, "mean_sq_deviation_bits2": self.mean_sq_deviation_bits2,
               "centre": self.centre, "penalty": self.penalty}
        own.update({k: base.pop(k) for k in ("subsample_ci", "control_variate") if k in base})
        return {**head, **own, **base}


@dataclass(frozen=True)
class TopKBound(MethodBound):
    """A top-k error-rate bound (0-1 losses, Theorem A; docs/theory.md §8); `rank_rule`: the tie rule of the
    prediction sets (None for statistics that predate it)."""

    rank_rule: str | None = None

    def _own_json(self) -> dict[str, Any]:
        return {} if self.rank_rule is None else {"rank_rule": self.rank_rule}


@dataclass(frozen=True)
class DocumentLevelBound(MethodBound):
    """The document-level baseline (docs/theory.md §9): a bound on the mean per-document loss."""

    quantity: str = "mean over documents of the per-document mean smoothed loss"

    def _own_json(self) -> dict[str, Any]:
        return {"quantity": self.quantity}


BOUND_TYPES: dict[str, type[MethodBound]] = {"variance_adaptive": VarianceAdaptiveBound,
                                             "document_level": DocumentLevelBound}


@dataclass(frozen=True)
class Certificate:
    """A certificate: its resolved inputs, the sample, every bound, and the headline (the best paid method).

    `model`, `data`, `provenance` are the caller's records; `extra` every other key a caller added (kept in
    order, written after the computed keys).
    """

    inputs: CertifyInputs
    sample: Sample
    kind: str
    method: str
    bound_bits_per_token: float
    random_guess_bits: float
    vacuous: bool
    bounds: Mapping[str, MethodBound]
    top_k: Mapping[int, TopKBound]
    bits_per_byte: float | None
    break_even_tokens: Mapping[str, float | None]
    model: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> MethodBound:
        return self.bounds[self.method]

    @property
    def terms(self) -> Terms:
        """The headline's three terms."""
        t = self.headline.terms
        return Terms(t.empirical_bits, t.complexity_bits, t.subsample_bits)

    @property
    def alpha(self) -> float | None:
        return self.headline.alpha

    @property
    def top_k_error_bounds(self) -> dict[int, float]:
        return {k: e.bound_bits_per_token for k, e in self.top_k.items()}

    @property
    def heldout(self) -> bool:
        return bool(self.inputs.heldout)

    def to_json(self) -> dict[str, Any]:
        """The schema's dict, every key in its place (write it with artifacts.write_json)."""
        out = {
            "schema": SCHEMA, "kind": self.kind, "bound_bits_per_token": self.bound_bits_per_token,
            "method": self.method, "random_guess_bits": self.random_guess_bits, "vacuous": self.vacuous,
            "terms": self.headline.terms.to_json(headline_only=True), "inputs": self._inputs_json(),
            "bounds": {name: b.to_json() for name, b in self.bounds.items()},
            "top_k_error_bounds": {str(k): v for k, v in self.top_k_error_bounds.items()},
            "top_k": {str(k): e.to_json() for k, e in self.top_k.items()},
            "bits_per_byte": self.bits_per_byte, "break_even_tokens": dict(self.break_even_tokens),
            "model": dict(self.model), "data": dict(self.data), "provenance": dict(self.provenance),
        }
        out.update(self.extra)
        return out

    def _inputs_json(self) -> dict[str, Any]:
        i, s = self.inputs, self.sample
        out = {"num_tokens": s.num_tokens, "sample_size": s.sample_size, "num_positions": s.num_positions,
               "vocab_size": s.vocab_size, "exhaustive": s.exhaustive, "delta": i.delta,
               "delta_split": i.delta_split if isinstance(i.delta_split, str) else dict(i.delta_split),
               "alpha": self.alpha, "alpha_grid": list(i.alpha_grid), "lambda_grid": list(i.lambda_grid),
               "subsample_ci": i.subsample_ci, "azuma_ci": i.azuma_ci, "control_variate": i.control_variate,
               "pilot_draws": i.pilot_draws,
               "control_variate_used": None if s.control_variate_used is None else dict(s.control_variate_used),
               "message_bits": i.message_bits, "message_prefix_free": i.message_prefix_free,
               "extra_bits": dict(i.extra_bits), "methods": list(i.methods), "top_k": list(i.top_k),
               "num_documents": i.num_documents, "mean_bytes_per_token": i.mean_bytes_per_token,
               "context_rule": s.context_rule, "sampler": s.sampler, "seed": s.seed, "heldout": i.heldout}
        if not i.azuma_ci_recorded:
            del out["azuma_ci"]
        return out

    @classmethod
    def from_json(cls, cert: Mapping[str, Any]) -> "Certificate":
        """Read a certificate dict (a one-line TokenboundError when it is not one of this schema)."""
        check_schema(cert)
        inp = _get(cert, "inputs", "")
        sample = Sample(**{f.name: (inp.get(f.name) if f.name == "control_variate_used" else _get(inp, f.name, "inputs"))
                           for f in fields(Sample)})
        bounds = {name: BOUND_TYPES.get(name, MethodBound).from_json(b, f"bounds.{name}")
                  for name, b in _get(cert, "bounds", "").items()}
        top_k = {int(k): TopKBound.from_json(e, f"top_k.{k}") for k, e in _get(cert, "top_k", "").items()}
        return cls(inputs=CertifyInputs.from_json(inp), sample=sample, kind=_get(cert, "kind", ""),
                   method=_get(cert, "method", ""), bound_bits_per_token=_get(cert, "bound_bits_per_token", ""),
                   random_guess_bits=_get(cert, "random_guess_bits", ""), vacuous=_get(cert, "vacuous", ""),
                   bounds=bounds, top_k=top_k, bits_per_byte=cert.get("bits_per_byte"),
                   break_even_tokens=dict(cert.get("break_even_tokens") or {}),
                   model=dict(cert.get("model") or {}), data=dict(cert.get("data") or {}),
                   provenance=dict(cert.get("provenance") or {}), extra=extra_keys(cert))


def check_schema(cert: Any) -> None:
    if not isinstance(cert, Mapping) or cert.get("schema") != SCHEMA:
        got = cert.get("schema") if isinstance(cert, Mapping) else type(cert).__name__
        raise TokenboundError(f"certificate: schema is {got!r}, expected {SCHEMA!r}")


def extra_keys(cert: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a caller added to a certificate dict, in their order."""
    return {k: v for k, v in cert.items() if k not in COMPUTED_KEYS}
