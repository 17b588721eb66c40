"""Writing the original framework's format: ORIGINAL's file again with tensors replaced, or a new one.

With ``--like``, a torch zip checkpoint is rewritten member by member (the object graph ``data.pkl``
byte for byte, storages of rebuilt tensors replaced) and a safetensors file key by key. Without it,
a new torch.save zip (or safetensors file) holds the entries the rule file's ``reverse`` section
computes and the rebuilt state dict.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import OutputError, RemapError
from ..io.execute import materialize, produce
from ..io.picklewrite import TensorRef, dumps
from ..io.source import Source, StoredTensor
from ..io.torchzip import ZipWriter, member_data
from ..io.writer import FileSpan, OutTensor, open_empty, write_safetensors
from ..rules.model import Layout
from ..tensors import itemsize
from .plan import Reverse


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def rewrite_zip(original: Source, steps: Mapping[str, Reverse], hf: Mapping[str, StoredTensor], tmp: Path) -> None:
    """ORIGINAL's zip again, member by member: storages of rebuilt tensors replaced, all else copied."""
    assert original.path is not None
    by_start: dict[int, list[tuple[str, StoredTensor]]] = {}
    for key, tensor in original.tensors.items():
        if key in steps:
            by_start.setdefault(tensor.storage.start, []).append((key, tensor))
    fd = open_empty(tmp)
    try:
        archive = ZipWriter(fd)
        for name, span in member_data(original.path):
            views = by_start.get(span.start)
            archive.add(name, span if views is None else _storage(span.length, views, steps, hf))
        archive.close()
    finally:
        os.close(fd)


def _storage(length: int, views: list[tuple[str, StoredTensor]], steps: Mapping[str, Reverse],
             hf: Mapping[str, StoredTensor]) -> Any:
    """One storage's new bytes: a rebuilt tensor that is the whole storage streams; else scatter into a copy."""
    import numpy as np
    from numpy.lib.stride_tricks import as_strided

    if len(views) == 1:
        key, tensor = views[0]
        if tensor.offset == 0 and tensor.nbytes == length and tensor.contiguous_span() is not None:
            return _stream(produce(steps[key].recipe, hf))
    storage = views[0][1]
    data = np.frombuffer(bytearray(materialize(FileSpan(storage.storage.path, storage.storage.start, length))),
                         dtype=np.uint8)
    for key, tensor in views:
        size = itemsize(tensor.info.dtype)
        new = np.frombuffer(materialize(produce(steps[key].recipe, hf)), dtype=np.uint8)
        target = as_strided(data[tensor.offset * size:], shape=(*tensor.info.shape, size),
                            strides=(*(s * size for s in tensor._strides()), 1))
        target[...] = new.reshape(*tensor.info.shape, size)
    return data


def _stream(payload: Any) -> Any:
    """A payload as the zip writer takes it: file spans stay spans, a torch tensor becomes its bytes."""
    if type(payload).__module__.startswith("torch"):
        return materialize(payload)
    return payload


def rewrite_safetensors(original: Source, steps: Mapping[str, Reverse], hf: Mapping[str, StoredTensor],
                         tmp: Path) -> None:
    """ORIGINAL's safetensors keys in their order: rebuilt tensors from HF_DIR, dropped ones kept."""
    from ..io.readers.safetensors import read_header

    assert original.path is not None
    stored, metadata = read_header(original.path)
    tensors = []
    for key, tensor in stored.items():
        if key in steps:
            tensors.append(OutTensor(key, tensor.info, partial(produce, steps[key].recipe, hf)))
        else:
            span = tensor.contiguous_span()
            assert span is not None
            tensors.append(OutTensor(key, tensor.info, partial(FileSpan, tensor.storage.path, span[0], span[1])))
    write_safetensors(tmp, tensors, metadata)


def check_output_file(out: Path, force: bool, inputs: list[Path]) -> None:
    """The reverted checkpoint goes to a file: refuse a folder, an existing file without force, or an input."""
    if out.is_dir():
        raise OutputError("the output is a folder; revert writes one checkpoint file, name it", str(out))
    if out.exists() and not force:
        raise OutputError("output file already exists; pass --force to replace it", str(out))
    for path in inputs:
        if path.exists() and out.exists() and os.path.samefile(path, out):
            raise OutputError("the output would replace an input; choose another file", str(out))
    if not out.absolute().parent.is_dir():
        raise OutputError(f"folder {out.absolute().parent} does not exist", str(out))


def atomic_file(out: Path, force: bool, fill: Callable[[Path], None]) -> None:
    """Run ``fill(tmp)`` on a temporary file beside ``out``, then rename it into place."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.remap-{os.getpid()}-", dir=out.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    try:
        fill(tmp)
        os.chmod(tmp, 0o644)
        if out.exists() and not force:
            raise OutputError("output file appeared while writing; pass --force to replace it", str(out))
        os.replace(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"writing failed: {exc.strerror or exc}", str(out)) from exc
        raise


def tree(layout: Layout, entries: Mapping[str, Any], state: Any) -> Any:
    """The checkpoint's object graph: the entries at their paths, the state dict at the layout's."""
    tree: dict[str, Any] = {}
    for path, value in [*entries.items(), (layout.state_dict, state)]:
        if not path:
            if not isinstance(value, dict):
                raise RemapError("the state dict at the top level cannot share it with other entries")
            tree.update(value)
            continue
        node = tree
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def write_torch(tmp: Path, *, layout: Layout, entries: Mapping[str, Any], steps: Mapping[str, Reverse],
                 hf: Mapping[str, StoredTensor], name: str) -> None:
    """torch.save's zip layout under the archive folder ``name`` (torch.save uses the file's stem)."""
    keys = sorted(steps)
    state = {key: TensorRef(str(i), steps[key].info.dtype, tuple(steps[key].info.shape)) for i, key in enumerate(keys)}
    fd = open_empty(tmp)
    try:
        archive = ZipWriter(fd)
        archive.add(f"{name}/data.pkl", dumps(tree(layout, entries, state)))
        archive.add(f"{name}/byteorder", b"little")
        for i, key in enumerate(keys):
            archive.add(f"{name}/data/{i}", _stream(produce(steps[key].recipe, hf)))
        archive.add(f"{name}/version", b"3\n")
        archive.close()
    finally:
        os.close(fd)


def write_new_safetensors(tmp: Path, *, layout: Layout, entries: Mapping[str, Any], steps: Mapping[str, Reverse],
                       hf: Mapping[str, StoredTensor], name: str) -> None:
    tensors = [OutTensor(key, steps[key].info, partial(produce, steps[key].recipe, hf)) for key in sorted(steps)]
    write_safetensors(tmp, tensors, {"format": "pt"})
