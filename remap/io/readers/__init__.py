"""Readers: any common checkpoint format -> `Checkpoint` (see `remap.source`).

`read_checkpoint(path)` detects the format from the file's first bytes, not
its name: PyTorch zip (``.pt/.ckpt/.bin/.pth``), PyTorch's legacy pickle
stream, safetensors, a sharded index (``*.index.json``), or a folder holding
one of these. No reader imports torch or executes anything from the file, and
no path a folder or an index names is followed out of its folder.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Final

from ...errors import SourceError
from ..source import Checkpoint
from .index import contained, read_index, source_root
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
        path = _resolve_folder(path)
    if path.name.endswith(".index.json"):
        return read_index(path, read_file)
    return read_file(path)


def read_file(path: Path) -> Checkpoint:
    """One checkpoint file (never a folder or an index), by its first bytes."""
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
    """The checkpoint a folder holds; a link out of the folder is refused, never followed."""
    root = source_root(folder)
    for name in FOLDER_FILES:
        if os.path.lexists(folder / name) and _inside(root, folder, name).is_file():
            return folder / name
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(SUFFIXES))
    candidates = [p for p in (_inside(root, folder, name) for name in names) if p.is_file()]
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "no checkpoint files"
    raise SourceError(f"cannot tell which checkpoint to read in this folder (found: {found}); pass the file",
                      str(folder))


def _inside(root: Path, folder: Path, name: str) -> Path:
    if not contained(root, folder / name):
        raise SourceError(f"'{name}' in this folder links outside the folder (or cannot be resolved); refusing to "
                          "follow it", str(folder))
    return folder / name
