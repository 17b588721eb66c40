"""Initialised tensors (``init:`` entries): identity, zeros, ones, a constant, or seeded uniform noise.

Made with numpy in the planned dtype (bfloat16 rounded exactly as torch rounds),
so a conversion that only renames and initialises never imports torch. Random
fills use a generator seeded from the key: converting twice gives identical files.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..tensors import TensorInfo


def init_tensor(key: str, info: TensorInfo, fill: str | float) -> Any:
    """A fresh array for an ``init`` entry (shape from the target model), in the planned dtype.

    numpy does float16/32/64 and bfloat16 (rounded from float32 bits), so a
    conversion that only renames and initialises never imports torch.
    """
    import numpy as np

    shape, dtype = info.shape, info.dtype
    if isinstance(fill, (int, float)):
        values = np.full(shape, float(fill), dtype=np.float64)
    elif fill == "zeros":
        values = np.zeros(shape, dtype=np.float64)
    elif fill == "ones":
        values = np.ones(shape, dtype=np.float64)
    elif fill == "eye":
        values = np.eye(shape[0], shape[1], dtype=np.float64)
    elif fill == "uniform":
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        values = np.random.default_rng(seed).random(shape, dtype=np.float64)
    else:
        raise ValueError(f"unknown fill {fill!r}")
    if dtype in ("float16", "float32", "float64"):
        return np.ascontiguousarray(values.astype(dtype))
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32)
        return np.ascontiguousarray(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16))
    import torch

    return torch.from_numpy(values).to(getattr(torch, dtype))
