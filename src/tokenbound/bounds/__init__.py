"""bounds: pure numpy/scipy arithmetic of the generalization bounds (never imports torch).

Public API: certify / recompute / compare (certificate.py), the typed certificate (schema.py) and the
formulas they are built from.
The mathematics, with proofs and assumptions, is in docs/theory.md.
"""
from .breakeven import azuma_break_even_closed_form, break_even_tokens
from .budget import delta_shares, message_prior_items
from .certificate import certify, compare, is_exhaustive, recompute
from .document import document_level_bound, resolve_num_documents
from .martingale import azuma_bound_from_draws, azuma_complexity_bits
from .prefix import choice_bits, elias_gamma_bits
from .schema import (HEADLINE_METHODS, KIND_GENERALIZATION, KIND_TEST_SET, SCHEMA, Certificate, CertifyInputs,
                     DocumentLevelBound, MethodBound, TopKBound, VarianceAdaptiveBound)
from .smoothing import DEFAULT_ALPHA_GRID, loss_range_bits, random_guess_bits, smoothed_loss_bits
from .stats import TokenStats
from .subsampling import ControlVariate, draw_means, hoeffding_width, maurer_pontil_width, upper_mean
from .topk import DEFAULT_TOP_K, top_k_losses
from .variance import DEFAULT_LAMBDA_GRID, log_penalty, psi, variance_adaptive_bound_from_draws

__all__ = [
    "Certificate", "CertifyInputs", "ControlVariate", "DocumentLevelBound", "MethodBound", "TopKBound",
    "VarianceAdaptiveBound", "DEFAULT_ALPHA_GRID", "DEFAULT_LAMBDA_GRID", "DEFAULT_TOP_K", "HEADLINE_METHODS", "KIND_GENERALIZATION",
    "KIND_TEST_SET", "SCHEMA", "TokenStats", "azuma_bound_from_draws", "azuma_break_even_closed_form",
    "azuma_complexity_bits", "break_even_tokens", "certify", "choice_bits", "compare", "delta_shares",
    "document_level_bound", "draw_means", "elias_gamma_bits", "hoeffding_width", "is_exhaustive",
    "log_penalty", "loss_range_bits", "maurer_pontil_width", "message_prior_items", "psi", "random_guess_bits", "recompute",
    "resolve_num_documents", "smoothed_loss_bits", "top_k_losses", "upper_mean",
    "variance_adaptive_bound_from_draws",
]
