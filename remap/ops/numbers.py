"""Between raw elements and numbers, for the ops that compute: bits as unsigned integers, values as numbers.

Ops that only move bytes (permute, slice, stack...) never convert: they work on `Raw` arrays of
unsigned integers as wide as the dtype, so every bit is kept. Ops that compute (cast, weight norm,
scale) go through torch here, with the dtype's own rounding.
"""

from __future__ import annotations

from typing import Any

from ..tensors import itemsize
from .base import Raw


def uint(dtype: str) -> Any:
    """The unsigned numpy type as wide as ``dtype``: its elements' bits."""
    import numpy as np

    return {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize(dtype)]


def to_torch(raw: Raw) -> Any:
    """The elements as a torch tensor of their dtype (bits unchanged)."""
    import numpy as np
    import torch

    data = np.ascontiguousarray(raw.array)
    dtype = getattr(torch, raw.dtype)
    if data.size == 0:
        return torch.empty(data.shape, dtype=dtype)
    return torch.frombuffer(bytearray(data.tobytes()), dtype=dtype).reshape(data.shape)


def from_torch(tensor: Any) -> Raw:
    """A torch tensor's elements, bit for bit."""
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return Raw(flat.view(uint(dtype)).reshape(tuple(tensor.shape)), dtype)


def scalar_bits(value: float, dtype: str) -> int:
    """The bits of ``value`` stored as one element of ``dtype`` (rounded as torch rounds)."""
    import torch

    return int(from_torch(torch.tensor([value], dtype=getattr(torch, dtype))).array[0])
