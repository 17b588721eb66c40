"""Reading checkpoints: the one narrow interface the engine sees.

A reader turns a file into a `Checkpoint`: a tree of plain containers whose
tensor leaves are `TensorRef`s (shape, dtype, and a way to load the data).
`Checkpoint.state(rules)` then picks the state dict and the config the rule
file points at and returns a `Source`: keys, shapes, dtypes, lazy access.

This reader uses ``torch.load(weights_only=True)`` with the narrowest
allowlist s3prl's layout needs (``argparse.Namespace``) and memory-maps the
file. It never falls back to unsafe loading.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SourceError
from .planner import TensorInfo

if TYPE_CHECKING:
    import torch

SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


@dataclass(frozen=True)
class TensorRef:
    """A tensor in a checkpoint: what planning needs, and ``load()`` for the data."""

    info: TensorInfo
    _tensor: Any  # the (memory-mapped) torch.Tensor

    def load(self) -> torch.Tensor:
        return self._tensor


@dataclass(frozen=True)
class Record:
    """A non-container object found in a checkpoint, e.g. an argparse.Namespace."""

    class_name: str
    state: Mapping[str, Any]


@dataclass(frozen=True)
class Source:
    """The part of a checkpoint a rule file converts."""

    name: str  # the file name, recorded in the output's metadata
    tensors: Mapping[str, TensorRef]
    config: Mapping[str, Any]

    @property
    def infos(self) -> dict[str, TensorInfo]:
        return {key: ref.info for key, ref in self.tensors.items()}

    def load(self, key: str) -> torch.Tensor:
        return self.tensors[key].load()


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    tree: Any

    def select(self, dotted: str, what: str) -> Any:
        """Walk ``a.b.c`` through mappings and records; error names the file and the path."""
        node = self.tree
        walked: list[str] = []
        for part in dotted.split(".") if dotted else []:
            children = node.state if isinstance(node, Record) else node
            if not isinstance(children, Mapping) or part not in children:
                here = ".".join(walked) or "the top level"
                have = ", ".join(sorted(map(str, children))) if isinstance(children, Mapping) else "no entries"
                raise SourceError(f"no entry '{part}' at {here} where the rule file expects the {what} "
                                  f"'{dotted}' (found: {have or 'nothing'})", self.path.name)
            node = children[part]
            walked.append(part)
        return node

    def source(self, state_dict: str, config: str | None) -> Source:
        sd = self.select(state_dict, "state dict")
        if isinstance(sd, Record):
            sd = sd.state
        if not isinstance(sd, Mapping) or not sd:
            raise SourceError(f"'{state_dict or '<top level>'}' is not a non-empty state dict", self.path.name)
        for key, value in sd.items():
            if not isinstance(value, TensorRef):
                raise SourceError(f"state dict entry '{key}' is a {type(value).__name__}, not a tensor",
                                  self.path.name)
        cfg: Any = {}
        if config is not None:
            cfg = self.select(config, "config")
            cfg = cfg.state if isinstance(cfg, Record) else cfg
            if not isinstance(cfg, Mapping):
                raise SourceError(f"config '{config}' is a {type(cfg).__name__}, not a mapping", self.path.name)
        return Source(self.path.name, dict(sd), dict(cfg))

    def walk(self) -> Iterator[tuple[str, Any]]:
        """Every leaf with its dotted path: TensorRefs and plain values."""
        yield from _walk(self.tree, "")


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Record):
        yield prefix, node
        return
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)) and node and any(isinstance(v, (Mapping, TensorRef)) for v in node):
        for i, value in enumerate(node):
            yield from _walk(value, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix, node


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Open a PyTorch checkpoint safely; raise SourceError with a one-line reason."""
    import torch

    path = Path(path)
    if not path.exists():
        raise SourceError("no such file", str(path))
    if path.is_dir():
        raise SourceError("is a folder; pass the checkpoint file itself", str(path))
    if not zipfile.is_zipfile(path):
        raise SourceError("not a PyTorch zip checkpoint (truncated, or another format)", str(path))
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling failed"
        raise SourceError(f"refused to load: the checkpoint pickles objects remap will not "
                          f"construct, because loading them could run code ({first})", str(path)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"cannot read checkpoint: {reason}", str(path)) from None
    return Checkpoint(path, _wrap(raw))


def _wrap(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return TensorRef(TensorInfo(tuple(obj.shape), str(obj.dtype).removeprefix("torch.")), obj)
    if isinstance(obj, argparse.Namespace):
        return Record("argparse.Namespace", {k: _wrap(v) for k, v in vars(obj).items()})
    if isinstance(obj, Mapping):
        return {k if isinstance(k, str) else str(k): _wrap(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_wrap(v) for v in obj) if isinstance(obj, list) else tuple(_wrap(v) for v in obj)
    return obj
