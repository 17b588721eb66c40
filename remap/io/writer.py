"""The safetensors format, streamed: header first, then each tensor produced and written in turn.

The header is computed from the planned keys, shapes and dtypes alone, so peak
memory is one tensor. A pure rename is a `FileSpan`, copied file to file by
the kernel (``copy_file_range``) with no user-space buffer.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import OutputError
from ..tensors import DTYPES, TensorInfo
from ..tensors import nbytes as _nbytes

COPY_CHUNK: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileSpan:
    """Bytes to copy verbatim from another file (a pure rename: no conversion at all)."""

    path: Path
    start: int
    length: int


@dataclass(frozen=True)
class Parts:
    """Bytes to copy verbatim from several spans, one after the other (a concatenation along dim 0)."""

    spans: tuple[FileSpan, ...]


@dataclass(frozen=True)
class OutTensor:
    """One tensor to write: its key, its planned shape/dtype, and a function producing it.

    ``produce`` returns a FileSpan, Parts, a flat uint8 numpy array, or a torch.Tensor.
    """

    key: str
    info: TensorInfo
    produce: Callable[[], Any]


def nbytes(info: TensorInfo) -> int:
    if info.dtype not in DTYPES:
        raise OutputError(f"dtype {info.dtype} cannot be stored in safetensors")
    return _nbytes(info)


def safetensors_header(tensors: Iterable[OutTensor], metadata: Mapping[str, str]) -> bytes:
    """The length-prefixed JSON header, padded with spaces to 8-byte alignment."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for t in tensors:
        size = nbytes(t.info)
        header[t.key] = {"dtype": DTYPES[t.info.dtype].safetensors, "shape": list(t.info.shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def open_empty(path: Path) -> int:
    """Open ``path`` for writing, empty. Writers get new files (a staging folder's, a mkstemp name).

    Not ``O_TRUNC``: truncating a file that is already empty still marks it on
    ext4 (auto_da_alloc) to be flushed to disk when closed, a second per GB.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    if os.fstat(fd).st_size:
        os.ftruncate(fd, 0)
    return fd


def write_safetensors(path: Path, tensors: list[OutTensor], metadata: Mapping[str, str],
                      on_tensor: Callable[[int], None] | None = None) -> int:
    """Stream ``tensors`` into ``path``; return the bytes written."""
    fd = open_empty(path)
    try:
        header = safetensors_header(tensors, metadata)
        _write_all(fd, header)
        written = len(header)
        for t in tensors:
            written += _write_tensor(fd, t)
            if on_tensor is not None:
                on_tensor(nbytes(t.info))
    finally:  # no fsync, like cp and save_pretrained: the atomic rename is what guards against kills
        os.close(fd)
    return written


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _write_tensor(fd: int, t: OutTensor) -> int:
    payload = t.produce()
    expected = nbytes(t.info)
    if isinstance(payload, (FileSpan, Parts)):
        spans = payload.spans if isinstance(payload, Parts) else (payload,)
        if sum(span.length for span in spans) != expected:
            raise OutputError(f"internal error: '{t.key}' spans {sum(s.length for s in spans)} bytes, "
                              f"planned {expected}")
        for span in spans:
            copy_span(span, fd)
        return expected
    if not hasattr(payload, "dtype") or not hasattr(payload, "shape"):
        raise OutputError(f"internal error: '{t.key}' produced {type(payload).__name__}")
    if type(payload).__module__.startswith("torch"):
        payload = _tensor_bytes(t, payload)
    elif payload.ndim != 1 and tuple(payload.shape) != tuple(t.info.shape):
        raise OutputError(f"internal error: '{t.key}' has shape {list(payload.shape)}, planned {list(t.info.shape)}")
    data = memoryview(payload).cast("B")
    if len(data) != expected:
        raise OutputError(f"internal error: '{t.key}' produced {len(data)} bytes, planned {expected}")
    _write_all(fd, data)
    return expected


def _tensor_bytes(t: OutTensor, value: Any) -> Any:
    import torch

    actual = str(value.dtype).removeprefix("torch.")
    if actual != t.info.dtype or tuple(value.shape) != tuple(t.info.shape):
        raise OutputError(f"internal error: '{t.key}' was planned as {t.info.dtype}{list(t.info.shape)} "
                          f"but produced {actual}{list(value.shape)}")
    return value.detach().contiguous().reshape(-1).view(torch.uint8).numpy()


def copy_span(span: FileSpan, out: int) -> None:
    """Copy bytes file-to-file in the kernel where possible (no user-space buffer, no RSS growth)."""
    with open(span.path, "rb") as src:
        offset, left = span.start, span.length
        use_kernel = hasattr(os, "copy_file_range")
        while left > 0:
            n = 0
            if use_kernel:
                try:
                    n = os.copy_file_range(src.fileno(), out, min(left, COPY_CHUNK), offset)
                except OSError:
                    use_kernel = False
            if not use_kernel:
                chunk = os.pread(src.fileno(), min(left, COPY_CHUNK), offset)
                _write_all(out, chunk)
                n = len(chunk)
            if n == 0:
                raise OutputError(f"source file {span.path.name} ended early (changed while converting?)")
            offset, left = offset + n, left - n


