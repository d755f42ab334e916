import os

# Tests are deterministic and offline: never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import numpy as np
import pytest


def _periodic_store(path, seed=0, vocab=24, docs=120):
    """A small store of learnable documents (each an arithmetic progression of ids with noise, ended by eot 0)."""
    from tokenbound.data.store import write_store

    rng = np.random.default_rng(seed)
    stream, offsets = [], []
    for _ in range(docs):
        offsets.append(len(stream))
        start = int(rng.integers(1, vocab))
        stream += [1 + (start + 5 * k + int(rng.integers(0, 3))) % (vocab - 1)
                   for k in range(int(rng.integers(10, 50)))] + [0]
    return write_store(path, np.array(stream), np.array(offsets), vocab, 0)


@pytest.fixture(scope="session")
def periodic_store():
    """Writes the small learnable store of `_periodic_store` at a path: periodic_store(path, seed=0, ...)."""
    return _periodic_store
