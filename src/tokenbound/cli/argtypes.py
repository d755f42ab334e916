"""Shared argparse value types, so every float flag refuses the same bad values in the same words.

argparse reports a type error as one line naming the flag (``argument --max-minutes: ...``), exit status 2.
"""
from __future__ import annotations

import argparse
import math
import re


def finite_float(text: str) -> float:
    """A float that is neither nan nor infinite (the caller checks its range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (durations, tolerances)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


_DEVICE = re.compile(r"(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)")


def device(text: str) -> str:
    """A torch device name: cpu, cuda, cuda:N, mps, xpu, xpu:N (whether it exists is checked where it is used)."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def samples_or_all(text: str) -> int | str:
    """A draw count, or 'all' (every window of the rule once: an exhaustive certificate)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
