"""Progress of long loops, on a terminal and in logs alike.

On a terminal a tqdm bar; otherwise (a log file, CI, ``make demo > log``) a plain line on stderr at most every
``interval`` seconds (10 by default; ``TOKENBOUND_PROGRESS_SECONDS`` overrides it), e.g.

    score block doc:128/64: 1,200/96,000 tok (1.2%) 35 s

and a last line when the loop ends if any line was printed. Only the wall clock decides *when* a line is
printed; nothing that is computed depends on it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

DEFAULT_INTERVAL_S = 10.0


def default_interval() -> float:
    text = os.environ.get("TOKENBOUND_PROGRESS_SECONDS")
    try:
        value = float(text) if text else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def _isatty(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


class Progress:
    """``update(n)``, ``set_postfix(**kv)``, ``close()`` (also a context manager), like a tqdm bar.

    `enabled` False prints nothing. `tty` forces (True) or forbids (False) the tqdm bar; by default it is used
    when `file` is a terminal.
    """

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", *, enabled: bool = True,
                 initial: float = 0, file: TextIO | None = None, interval: float | None = None,
                 tty: bool | None = None, leave: bool = True, unit_scale: bool = False):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.n = initial
        self.file = file if file is not None else sys.stderr
        self.interval = default_interval() if interval is None else float(interval)
        self._postfix = ""
        self._bar = None
        self._printed = False
        self._emitted_n: float | None = None
        self._closed = False
        self._t0 = self._last = time.monotonic()
        if enabled and (tty if tty is not None else _isatty(self.file)):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.file, leave=leave,
                             dynamic_ncols=True, unit_scale=unit_scale)

    # -- the tqdm-like interface ---------------------------------------------------------------------------------
    def update(self, n: float = 1) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(now)

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def write(self, message: str) -> None:
        """A message line that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.file)
        else:
            print(message, file=self.file, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._printed and self.n != self._emitted_n:
            self._emit(time.monotonic())  # the final count, unless the last line already showed it

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plain lines ---------------------------------------------------------------------------------------------
    def line(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self._t0
        done = _count(self.n)
        if self.total:
            where = f"{done}/{_count(self.total)} {self.unit} ({100.0 * self.n / self.total:.1f}%)"
        else:
            where = f"{done} {self.unit}"
        post = f", {self._postfix}" if self._postfix else ""
        return f"{self.desc}: {where} {elapsed:.0f} s{post}"

    def _emit(self, now: float) -> None:
        self._printed, self._emitted_n = True, self.n
        print(self.line(now), file=self.file, flush=True)


def progress(total: float | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> Progress:
    """A `Progress` (see the class)."""
    return Progress(total, desc, unit, **kwargs)


def track(iterable: Iterable, desc: str = "", unit: str = "it", total: float | None = None,
          **kwargs: Any) -> Iterator:
    """Iterate `iterable`, reporting one unit per item (like ``tqdm(iterable)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)
