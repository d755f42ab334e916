"""What `tokenbound bound` computes, as one typed value (the flags: cli/bound_options.py)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ..bounds.budget import check_delta, check_extra_bits
from ..bounds.certificate import default_pilot_draws
from ..bounds.schema import HEADLINE_METHODS
from ..bounds.subsampling import CI_METHODS
from ..errors import TokenboundError
from .control import DEFAULT_CONTROL

DEFAULT_SAMPLES = 10_000


@dataclass(frozen=True)
class BoundOptions:
    """What `bound` computes: the sampling plan and the certificate's options (runtime settings are separate).

    `samples`: sampler draws, or "all" (every window of the rule once: an exhaustive certificate). `context`
    None: the model's own rule (default_context). `subsample_ci` is the confidence bound the variance-adaptive
    method uses for its subsampled sums; `azuma_ci` the Azuma method's (None: the same; "hoeffding" is the
    seed paper's); see docs/theory.md §5. `extra_bits` ({name: bits}) pays for choices made after seeing the
    data (docs/theory.md §12); names the model's message already charges are refused. `control_variate`
    (evaluate/control.py: "markov:1", "markov:0" or "none") is attached to the statistics and used with the
    betting bound. `pilot_draws` (None: a tenth of the draws from 200 on) choose α and λ before the rest certify
    them. `heldout` needs evidence that the model never saw the held-out store (`train_data` helps find it),
    or, for a model whose training data is unknown (Hugging Face, GGUF), `assume_unseen` stating it
    (evaluate/heldout.py, docs/theory.md §10). `doc_samples` > 0 adds the document-level baseline.
    """

    samples: int | str = DEFAULT_SAMPLES
    context: str | None = None
    sampler: str = "token"
    delta: float = 0.05
    heldout: bool = False
    doc_samples: int = 0
    seed: int = 0
    train_data: Path | None = None
    assume_unseen: bool = False
    methods: tuple[str, ...] = HEADLINE_METHODS
    alpha_grid: tuple[float, ...] | None = None
    extra_bits: Mapping[str, float] = field(default_factory=dict)
    subsample_ci: str = "betting"
    azuma_ci: str | None = None
    control_variate: str = DEFAULT_CONTROL
    pilot_draws: int | None = None

    def checked(self) -> "BoundOptions":
        """The options with their defaults resolved (an exhaustive plan: sampler "all", no pilot); a one-line
        TokenboundError naming the option otherwise."""
        samples, sampler, pilot_draws = self.samples, self.sampler, self.pilot_draws
        if samples == "all":
            # every window of the rule once: the empirical risk is exact, no subsampling term, nothing to pilot
            if sampler not in ("token", "block", "all"):
                raise TokenboundError(f"'all' works with the token or block sampler, got sampler {sampler!r}",
                                      param="samples")
            if pilot_draws:
                raise TokenboundError("an exhaustive certificate (samples 'all') has no pilot", param="pilot_draws")
            sampler, pilot_draws = "all", 0
        elif isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
            raise TokenboundError(f"must be a positive integer or 'all', got {samples!r}", param="samples")
        if self.assume_unseen and not self.heldout:
            raise TokenboundError("only with --heldout (heldout=True)", param="assume_unseen")
        if self.doc_samples < 0:
            raise TokenboundError(f"must be >= 0, got {self.doc_samples}", param="doc_samples")
        check_delta(self.delta)
        extras = check_extra_bits(self.extra_bits)
        if self.azuma_ci is not None and self.azuma_ci not in CI_METHODS:
            raise TokenboundError(f"expected one of {', '.join(CI_METHODS)}, got {self.azuma_ci!r}", param="azuma_ci")
        if pilot_draws is None:
            pilot_draws = default_pilot_draws(samples)
        if pilot_draws < 0 or (pilot_draws and pilot_draws > samples - 2):
            raise TokenboundError(f"must be 0 or between 1 and samples − 2 = {samples - 2}, got {pilot_draws}",
                                  param="pilot_draws")
        return replace(self, sampler=sampler, pilot_draws=pilot_draws, extra_bits=extras,
                       methods=tuple(self.methods))

    @property
    def uses_betting(self) -> bool:
        return "betting" in (self.subsample_ci, self.azuma_ci or self.subsample_ci)
