"""Writing the output folder: streaming safetensors, JSON side files, atomic rename.

The safetensors header is computed from the plan alone (keys, shapes,
dtypes), written first, and then each tensor is produced and written one at a
time, so peak memory is one tensor. Everything goes into a hidden temporary
folder next to the destination, which is renamed into place at the end: a
failure at any point leaves no partial output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .dtypes import DTYPES
from .errors import OutputError
from .planner import TensorInfo

COPY_CHUNK: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileSpan:
    """Bytes to copy verbatim from another file (a pure rename: no conversion at all)."""

    path: Path
    start: int
    length: int


@dataclass(frozen=True)
class OutTensor:
    """One tensor to write: its key, its planned shape/dtype, and a function producing it.

    ``produce`` returns a FileSpan, a flat uint8 numpy array, or a torch.Tensor.
    """

    key: str
    info: TensorInfo
    produce: Callable[[], Any]


def nbytes(info: TensorInfo) -> int:
    if info.dtype not in DTYPES:
        raise OutputError(f"dtype {info.dtype} cannot be stored in safetensors")
    return math.prod(info.shape) * DTYPES[info.dtype].itemsize


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


def write_safetensors(path: Path, tensors: list[OutTensor], metadata: Mapping[str, str],
                      on_tensor: Callable[[int], None] | None = None) -> int:
    """Stream ``tensors`` into ``path``; return the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
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
    if isinstance(payload, FileSpan):
        if payload.length != expected:
            raise OutputError(f"internal error: '{t.key}' spans {payload.length} bytes, planned {expected}")
        _copy_span(payload, fd)
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


def _copy_span(span: FileSpan, out: int) -> None:
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


OWN_FILES: Final = re.compile(r"(config\.json|preprocessor_config\.json|model\.safetensors(\.index\.json)?|"
                              r"model-\d{5}-of-\d{5}\.safetensors)\Z")


def check_destination(out_dir: Path, force: bool, source: Path | None = None) -> None:
    """Refuse an existing destination unless ``force``; even then, only replace remap's own output."""
    if out_dir.absolute().parent.is_dir():
        _remove_stale(out_dir.absolute().parent, out_dir.name)  # first: it may put a previous output back
    if out_dir.exists() and not force:
        raise OutputError("output folder already exists; pass --force to replace it", str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("output path exists and is not a folder", str(out_dir))
    if source is not None and (source.resolve() == out_dir.resolve() or
                               out_dir.resolve() in source.resolve().parents):
        raise OutputError("the output folder contains the source checkpoint; choose another folder", str(out_dir))
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if not OWN_FILES.match(p.name))
        if foreign:
            raise OutputError(f"refusing to replace a folder holding files remap did not write "
                              f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                              "remove them or choose another folder", str(out_dir))
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} is not a folder", str(out_dir))
            break


def _make_parents(out_dir: Path) -> list[Path]:
    """Create missing parent folders; return them (deepest first) so a failure can remove them."""
    missing = [p for p in out_dir.absolute().parents if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir()
    return missing


def write_folder(out_dir: Path, force: bool, fill: Callable[[Path], None], source: Path | None = None) -> None:
    """Run ``fill(tmp)`` on a fresh temporary folder, then move it to ``out_dir`` atomically."""
    check_destination(out_dir, force, source)
    parent = out_dir.absolute().parent
    try:
        created = _make_parents(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.remap-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a temporary folder in {parent}: {exc.strerror}", str(out_dir)) from None
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"writing failed: {exc.strerror or exc}", str(out_dir)) from exc
        raise


def _remove_stale(parent: Path, name: str) -> None:
    """Clean up after a killed remap (its pid is gone) for this destination.

    Its temporary folder is removed. A previous output it had moved aside to
    replace (``-old``) is put back if the destination is missing, else removed.
    """
    for leftover in sorted(parent.glob(f".{name}.remap-*-*")):
        pid = leftover.name[len(f".{name}.remap-"):].split("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if leftover.name.endswith("-old") and not (parent / name).exists():
            os.rename(leftover, parent / name)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.absolute().parent / f".{out_dir.name}.remap-{os.getpid()}-old"
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
