"""safetensors files: the JSON header gives every key, dtype, shape and byte range.

The header is checked as strictly as the safetensors library does: a known dtype, a shape of plain
non-negative integers, a byte range inside the file that matches the shape, and no two tensors sharing
bytes.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any, Final

from ...errors import SourceError
from ...tensors import BY_SAFETENSORS, TensorInfo
from ..source import Checkpoint, Storage, StoredTensor
from .limits import MAX_DIMS, MAX_JSON, is_plain_int, load_json

MAX_HEADER: Final = MAX_JSON


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
    """Parse and validate the header; every tensor must lie inside the file, no two may overlap."""
    end = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SourceError("safetensors file too short (truncated)", str(path))
        size = struct.unpack("<Q", head)[0]
        if size > MAX_HEADER or 8 + size > end:
            raise SourceError("safetensors header is larger than the file (truncated or corrupt)", str(path))
        raw = f.read(size)
    header = load_json(raw, "safetensors header", str(path))
    if not isinstance(header, dict):
        raise SourceError("safetensors header is not a JSON object", str(path))
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SourceError("safetensors header's '__metadata__' is not an object of strings (as safetensors requires)",
                          str(path))
    base = 8 + size
    tensors = {key: _entry(path, key, value, base, end) for key, value in header.items()}
    _check_overlaps(path, tensors)
    return tensors, metadata


def _entry(path: Path, key: str, value: Any, base: int, end: int) -> StoredTensor:
    if not isinstance(value, dict) or not {"dtype", "shape", "data_offsets"} <= set(value):
        raise SourceError(f"bad header entry for '{key}' (needs 'dtype', 'shape' and 'data_offsets')", str(path))
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in BY_SAFETENSORS:
        known = ", ".join(sorted(BY_SAFETENSORS))
        raise SourceError(f"tensor '{key}' has an unknown dtype {_brief(dtype)} (known: {known})", str(path))
    if type(shape) is not list or len(shape) > MAX_DIMS or not all(is_plain_int(n) for n in shape):
        raise SourceError(f"tensor '{key}' has a shape that is not a list of at most {MAX_DIMS} non-negative "
                          f"integers: {_brief(shape)}", str(path))
    if type(offsets) is not list or len(offsets) != 2 or not all(is_plain_int(n) for n in offsets):
        raise SourceError(f"tensor '{key}' has 'data_offsets' that are not two non-negative integers: "
                          f"{_brief(offsets)}", str(path))
    start, stop = offsets
    tensor = StoredTensor(TensorInfo(tuple(shape), BY_SAFETENSORS[dtype].name), Storage(path, base + start,
                                                                                       max(0, stop - start)))
    if stop < start or base + stop > end or tensor.nbytes != stop - start:
        raise SourceError(f"tensor '{key}' has a byte range that does not fit the file (truncated?)", str(path))
    return tensor


def _check_overlaps(path: Path, tensors: dict[str, StoredTensor]) -> None:
    spans = sorted((t.storage.start, t.storage.start + t.storage.nbytes, key)
                   for key, t in tensors.items() if t.storage.nbytes)
    for (_, stop, first), (start, _, second) in itertools.pairwise(spans):
        if start < stop:
            raise SourceError(f"tensors '{first}' and '{second}' overlap in the file's data; refusing an ambiguous "
                              "file (safetensors never writes one)", str(path))


def _brief(value: Any) -> str:
    if isinstance(value, (list, dict)) and len(value) > 8:
        return f"a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)} entries"
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):
        text = f"a nested JSON {'array' if isinstance(value, list) else 'object'}"
    return text if len(text) <= 60 else text[:57] + "..."
