"""Sharded output: weights split into numbered files plus the index transformers reads.

``--max-shard-size`` takes sizes the way transformers' ``max_shard_size`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import OutputError
from .writer import OutTensor, nbytes, write_safetensors


def parse_size(text: str) -> int:
    """'2GB' (10**9), '500MiB' (2**20), '1.5GB', or plain bytes, as transformers' max_shard_size reads them."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    clean = text.strip().upper()
    number = clean.rstrip("KMGTIB")
    unit = clean[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or not math.isfinite(value) or value <= 0:
        raise OutputError(f"invalid size '{text}'; use e.g. 2GB, 500MB or 1GiB")
    return int(value * units[unit])


def shard(tensors: list[OutTensor], max_bytes: int | None) -> list[list[OutTensor]]:
    """Split tensors (in order) into shards of at most ``max_bytes`` data; a larger tensor gets its own."""
    if max_bytes is None:
        return [tensors]
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        n = nbytes(t.info)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += n
    return shards


def write_weights(folder: Path, tensors: list[OutTensor], metadata: Mapping[str, str], max_bytes: int | None,
                  on_tensor: Callable[[int], None] | None = None) -> int:
    """model.safetensors, or numbered shards plus model.safetensors.index.json as transformers expects."""
    shards = shard(tensors, max_bytes)
    if len(shards) == 1:
        return write_safetensors(folder / "model.safetensors", tensors, metadata, on_tensor)
    written = 0
    weight_map: dict[str, str] = {}
    for i, part in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        written += write_safetensors(folder / name, part, metadata, on_tensor)
        weight_map.update({t.key: name for t in part})
    index = {"metadata": {"total_size": sum(nbytes(t.info) for t in tensors)}, "weight_map": weight_map}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    (folder / "model.safetensors.index.json").write_text(text)
    return written + len(text)
