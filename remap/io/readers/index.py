"""Sharded checkpoints: a ``*.index.json`` maps each tensor name to a shard file beside it.

An index comes with the download, so its shard names are not trusted: each must resolve (symlinks
included) to a file inside the index's folder (see `source_root` for the Hugging Face cache). ``../x``,
an absolute path, or a link leaving the folder is refused in one line that names the shard as written,
the same whether anything exists there or not, and never shows where it points. A shard is read as a
single file, never as an index or a folder, so an index that lists itself (or another index) cannot
recurse. A file listed under several names is read once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import SourceError
from ..source import Checkpoint, StoredTensor
from .limits import read_json_file

_HUB_PREFIXES = ("models--", "datasets--", "spaces--")


def source_root(folder: Path) -> Path:
    """The folder nothing may be read from outside of: ``folder`` itself (resolved).

    In the Hugging Face cache (``models--ORG--NAME/snapshots/REV/``) every file is a link into the
    repository's ``blobs/``, so there the root is the repository's cache folder.
    """
    root = Path(os.path.realpath(folder))
    for here in (root, *root.parents):
        if here.parent.name == "snapshots" and here.parent.parent.name.startswith(_HUB_PREFIXES):
            return here.parent.parent
    return root


def contained(root: Path, candidate: Path) -> bool | None:
    """Whether ``candidate`` resolves to a path strictly inside ``root`` (resolved); None if it cannot resolve."""
    try:
        resolved = Path(os.path.realpath(candidate))
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None
    return resolved != root and resolved.is_relative_to(root)


def read_index(path: Path, read_file: Callable[[Path], Checkpoint]) -> Checkpoint:
    """The tensors an index lists, each from its shard; every listed tensor must be found."""
    weight_map = _weight_map(path)
    by_file: dict[tuple[int, int], Checkpoint] = {}
    shards: dict[str, Any] = {}
    root = source_root(path.parent)
    for name in sorted(set(weight_map.values())):
        shard = _shard(path, root, name)
        stat = shard.stat()
        if (stat.st_dev, stat.st_ino) not in by_file:
            by_file[(stat.st_dev, stat.st_ino)] = read_file(shard)
        shards[name] = by_file[(stat.st_dev, stat.st_ino)].tree
    tree: dict[str, Any] = {}
    for key, name in weight_map.items():
        value = shards[name].get(key) if isinstance(shards[name], dict) else None
        if isinstance(value, StoredTensor):
            tree[key] = value
    missing = sorted(set(weight_map) - set(tree))
    if missing:
        raise SourceError(f"tensor '{missing[0]}' is listed in the index but not found in its shard "
                          f"({len(missing)} missing)", str(path))
    return Checkpoint(path, dict(sorted(tree.items())), "sharded")


def _weight_map(path: Path) -> dict[str, str]:
    index = read_json_file(path, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SourceError("not a valid shard index (needs a 'weight_map' object from tensor names to shard file "
                          "names)", str(path))
    return weight_map


def _shard(index: Path, root: Path, name: str) -> Path:
    if name.endswith(".index.json"):
        raise SourceError(f"shard '{name}' listed in the index is itself an index; an index must list checkpoint "
                          "files", str(index))
    candidate = index.parent / name
    inside = contained(root, candidate) if name and "\0" not in name else None
    if inside is None:
        raise SourceError(f"shard '{name}' listed in the index is not a usable file name (or a symlink loop)",
                          str(index))
    if not inside:
        raise SourceError(f"shard '{name}' listed in the index is outside the index's folder; every shard must be "
                          "a file in that folder", str(index))
    if not candidate.is_file():
        what = "is not a file" if candidate.exists() else "is missing"
        raise SourceError(f"shard '{name}' listed in the index {what}", str(index))
    return candidate
