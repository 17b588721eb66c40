"""safetensors files: the JSON header gives every key, dtype, shape and byte range."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Final

from ...errors import SourceError
from ...tensors import BY_SAFETENSORS, TensorInfo
from ..source import Checkpoint, Storage, StoredTensor

MAX_HEADER: Final = 100 * 1024 * 1024


def looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    size = struct.unpack("<Q", head[:8])[0]
    return 2 <= size <= MAX_HEADER and head[8:9] == b"{"


def read_safetensors(path: Path) -> Checkpoint:
    tensors, _metadata = read_header(path)
    tree: dict[str, Any] = dict(tensors)
    return Checkpoint(path, tree, "safetensors")


def read_header(path: Path) -> tuple[dict[str, StoredTensor], dict[str, str]]:
    """Parse and validate the header; every tensor must lie inside the file."""
    end = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SourceError("safetensors file too short (truncated)", str(path))
        size = struct.unpack("<Q", head)[0]
        if size > MAX_HEADER or 8 + size > end:
            raise SourceError("safetensors header is larger than the file (truncated or corrupt)", str(path))
        raw = f.read(size)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"safetensors header is not valid JSON: {exc}", str(path)) from None
    if not isinstance(header, dict):
        raise SourceError("safetensors header is not a JSON object", str(path))
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + size
    tensors = {key: _entry(path, key, value, base, end) for key, value in header.items()}
    return tensors, metadata


def _entry(path: Path, key: str, value: Any, base: int, end: int) -> StoredTensor:
    try:
        dtype = BY_SAFETENSORS[value["dtype"]].name
        shape = tuple(int(n) for n in value["shape"])
        start, stop = (int(n) for n in value["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"bad header entry for '{key}'", str(path)) from None
    tensor = StoredTensor(TensorInfo(shape, dtype), Storage(path, base + start, stop - start))
    if stop < start or base + stop > end or tensor.nbytes != stop - start or min(shape, default=0) < 0:
        raise SourceError(f"tensor '{key}' has a byte range that does not fit the file (truncated?)", str(path))
    return tensor
