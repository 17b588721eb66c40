"""Turning plan entries into tensors: copy (and cast), or initialise.

The only module besides the reader and writer that touches tensor data.
Initialised tensors are deterministic: random fills use a generator seeded
from the key, so converting twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .planner import Entry, InitEntry
from .sources import Source

if TYPE_CHECKING:
    import torch


def _dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


def copy_tensor(entry: Entry, source: Source) -> torch.Tensor:
    """The source tensor for ``entry``, cast when the rule says so."""
    tensor = source.load(entry.source)
    if entry.cast is not None:
        tensor = tensor.to(_dtype(entry.cast))
    return tensor


def init_tensor(entry: InitEntry) -> torch.Tensor:
    """A fresh tensor for an ``init`` entry (shape from the target model)."""
    import torch

    assert entry.info is not None, "init tensors need the target model's shape"
    shape, dtype = entry.info.shape, _dtype(entry.info.dtype)
    fill = entry.init.fill
    if fill == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if fill == "ones":
        return torch.ones(shape, dtype=dtype)
    if fill == "eye":
        return torch.eye(shape[0], shape[1], dtype=dtype)
    if fill == "uniform":
        seed = int.from_bytes(hashlib.sha256(entry.target.encode()).digest()[:8], "little")
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(shape, generator=generator, dtype=torch.float32).to(dtype)
    raise ValueError(f"unknown fill {fill!r}")
