"""Monte Carlo validity harness: synthetic sources with exact conditionals, coverage of the bounds."""
from .harness import METHODS, run_trial, true_risk_bits, true_top_k_risk, validate
from .sources import Source, make_source, parse_source

__all__ = ["METHODS", "Source", "make_source", "parse_source", "run_trial", "true_risk_bits", "true_top_k_risk",
           "validate"]
