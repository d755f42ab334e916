"""Canonical hash of a set of named tensors: what a CompressedModel's manifest records and `verify` checks."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np


def state_sha256(state: Mapping[str, Any]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of each tensor, in sorted name order.

    Accepts torch tensors or numpy arrays; bit-identical tensors give identical hashes on any machine
    (little-endian bytes, contiguous). bfloat16 tensors are hashed through their int16 bit pattern.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if hasattr(t, "detach"):  # torch.Tensor, without importing torch here
            t = t.detach().cpu().contiguous()
            dtype = str(t.dtype).replace("torch.", "")
            arr = (t.view(__import__("torch").int16) if dtype == "bfloat16" else t).numpy()
        else:
            arr = np.ascontiguousarray(t)
            dtype = arr.dtype.name
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}\0{dtype}\0{tuple(arr.shape)}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()
