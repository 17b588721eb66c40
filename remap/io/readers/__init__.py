"""Readers: any common checkpoint format -> `Checkpoint` (see `remap.source`).

`read_checkpoint(path)` detects the format from the file's first bytes, not
its name: PyTorch zip (``.pt/.ckpt/.bin/.pth``), PyTorch's legacy pickle
stream, safetensors, a sharded index (``*.index.json``), or a folder holding
one of these. No reader imports torch or executes anything from the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Final

from ...errors import SourceError
from ..source import Checkpoint, StoredTensor
from .safetensors import looks_like_safetensors, read_safetensors
from .torchfile import LEGACY_PREFIX, read_legacy, read_zip

FOLDER_FILES: Final = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                       "pytorch_model.bin")
SUFFIXES: Final = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Open any supported checkpoint; raise SourceError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise SourceError("no such file", str(path))
    if path.is_dir():
        return read_checkpoint(_resolve_folder(path))
    if path.name.endswith(".index.json"):
        return _read_index(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}", str(path)) from None
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise SourceError("zip archive without its central directory (truncated download?)", str(path))
        return read_zip(path)
    if head.startswith(LEGACY_PREFIX):
        return read_legacy(path)
    if looks_like_safetensors(head):
        return read_safetensors(path)
    what = "empty file" if not head else "unknown format"
    raise SourceError(f"{what}: not a PyTorch checkpoint (zip or legacy), a safetensors file, or a folder "
                      "of them", str(path))


def _resolve_folder(folder: Path) -> Path:
    for name in FOLDER_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "no checkpoint files"
    raise SourceError(f"cannot tell which checkpoint to read in this folder (found: {found}); pass the file",
                      str(folder))


def _read_index(path: Path) -> Checkpoint:
    try:
        index = json.loads(path.read_text())
        weight_map: dict[str, str] = index["weight_map"]
        assert isinstance(weight_map, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise SourceError("not a valid shard index (needs a 'weight_map' object)", str(path)) from None
    tree: dict[str, Any] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard = path.parent / shard_name
        if not shard.is_file():
            raise SourceError(f"shard '{shard_name}' listed in the index is missing", str(path))
        shard_tree = read_checkpoint(shard).tree
        for key, value in (shard_tree.items() if isinstance(shard_tree, dict) else []):
            if weight_map.get(key) == shard_name and isinstance(value, StoredTensor):
                tree[key] = value
    missing = sorted(set(weight_map) - set(tree))
    if missing:
        raise SourceError(f"tensor '{missing[0]}' is listed in the index but not found in its shard "
                          f"({len(missing)} missing)", str(path))
    return Checkpoint(path, dict(sorted(tree.items())), "sharded")
