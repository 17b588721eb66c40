"""Producing one output tensor's bytes: copy, cast, or initialise.

A pure rename never converts anything: a contiguous stored tensor becomes a
`FileSpan` that the writer copies file-to-file, and a strided view is
gathered byte-wise. Only casts and initialisations build torch tensors, one
at a time. Random fills use a generator seeded from the key, so converting
twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..tensors import TensorInfo
from .source import StoredTensor
from .writer import FileSpan


def copy_tensor(stored: StoredTensor, cast: str | None = None) -> Any:
    """What to write for ``stored`` (cast to ``cast``): a FileSpan, gathered bytes, or a cast torch.Tensor."""
    if cast is not None and cast != stored.info.dtype:
        import torch

        return stored.load().to(getattr(torch, cast))
    span = stored.contiguous_span()
    if span is not None:
        return FileSpan(stored.storage.path, span[0], span[1])
    return stored.read()


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
