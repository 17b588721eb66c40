"""Turning plan entries into bytes to write: copy, cast, or initialise.

A pure rename never converts anything: a contiguous stored tensor becomes a
`FileSpan` that the writer copies file-to-file, and a strided view is
gathered byte-wise. Only casts and initialisations build torch tensors, one
at a time. Random fills use a generator seeded from the key, so converting
twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .planner import Entry, InitEntry
from .source import Source
from .writer import FileSpan


def copy_tensor(entry: Entry, source: Source) -> Any:
    """What to write for ``entry``: a FileSpan, gathered bytes, or a cast torch.Tensor."""
    stored = source.tensors[entry.source]
    if entry.cast is not None and entry.cast != stored.info.dtype:
        import torch

        return stored.load().to(getattr(torch, entry.cast))
    span = stored.contiguous_span()
    if span is not None:
        return FileSpan(stored.storage.path, span[0], span[1])
    return stored.read()


def init_tensor(entry: InitEntry) -> Any:
    """A fresh torch.Tensor for an ``init`` entry (shape from the target model)."""
    import torch

    assert entry.info is not None, "init tensors need the target model's shape"
    shape, dtype = entry.info.shape, getattr(torch, entry.info.dtype)
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
