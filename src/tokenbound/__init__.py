"""tokenbound: certified token-level generalization bounds for language models."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "TokenStore", "load", "TokenboundError"]

from .errors import TokenboundError


def __getattr__(name: str):
    # Lazy so that `import tokenbound` and light CLI verbs stay fast (no torch import).
    if name == "TokenStore":
        from .data.store import TokenStore

        return TokenStore
    if name == "load":
        from .models.loading import load

        return load
    raise AttributeError(name)
