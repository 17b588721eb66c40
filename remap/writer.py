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
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .errors import OutputError
from .planner import TensorInfo

if TYPE_CHECKING:
    import torch

# dtype name -> (safetensors code, bytes per element)
SAFETENSORS_DTYPES: Final[Mapping[str, tuple[str, int]]] = {
    "float64": ("F64", 8), "float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2),
    "float8_e4m3fn": ("F8_E4M3", 1), "float8_e5m2": ("F8_E5M2", 1),
    "int64": ("I64", 8), "int32": ("I32", 4), "int16": ("I16", 2), "int8": ("I8", 1),
    "uint64": ("U64", 8), "uint32": ("U32", 4), "uint16": ("U16", 2), "uint8": ("U8", 1),
    "bool": ("BOOL", 1), "complex64": ("C64", 8),
}


@dataclass(frozen=True)
class OutTensor:
    """One tensor to write: its key, its planned shape/dtype, and a function producing it."""

    key: str
    info: TensorInfo
    produce: Callable[[], torch.Tensor]


def nbytes(info: TensorInfo) -> int:
    if info.dtype not in SAFETENSORS_DTYPES:
        raise OutputError(f"dtype {info.dtype} cannot be stored in safetensors")
    return math.prod(info.shape) * SAFETENSORS_DTYPES[info.dtype][1]


def safetensors_header(tensors: Iterable[OutTensor], metadata: Mapping[str, str]) -> bytes:
    """The length-prefixed JSON header, padded with spaces to 8-byte alignment."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for t in tensors:
        size = nbytes(t.info)
        header[t.key] = {"dtype": SAFETENSORS_DTYPES[t.info.dtype][0], "shape": list(t.info.shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(path: Path, tensors: list[OutTensor], metadata: Mapping[str, str],
                      on_tensor: Callable[[int], None] | None = None) -> int:
    """Stream ``tensors`` into ``path``; return the bytes written."""
    written = 0
    with open(path, "wb") as f:
        header = safetensors_header(tensors, metadata)
        f.write(header)
        written += len(header)
        for t in tensors:
            written += _write_tensor(f, t)
            if on_tensor is not None:
                on_tensor(nbytes(t.info))
        f.flush()
        os.fsync(f.fileno())
    return written


def _write_tensor(f: object, t: OutTensor) -> int:
    import torch

    value = t.produce().detach()
    actual = str(value.dtype).removeprefix("torch.")
    if actual != t.info.dtype or tuple(value.shape) != tuple(t.info.shape):
        raise OutputError(f"internal error: '{t.key}' was planned as {t.info.dtype}{list(t.info.shape)} "
                          f"but produced {actual}{list(value.shape)}")
    data = value.contiguous().reshape(-1).view(torch.uint8).numpy()
    f.write(memoryview(data))  # type: ignore[attr-defined]
    return int(data.nbytes)


def check_destination(out_dir: Path, force: bool) -> None:
    """Refuse an existing destination unless ``force``; call before any work."""
    if out_dir.exists() and not force:
        raise OutputError("output folder already exists; pass --force to replace it", str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("output path exists and is not a folder", str(out_dir))
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


def write_folder(out_dir: Path, force: bool, fill: Callable[[Path], None]) -> None:
    """Run ``fill(tmp)`` on a fresh temporary folder, then move it to ``out_dir`` atomically."""
    check_destination(out_dir, force)
    parent = out_dir.absolute().parent
    try:
        created = _make_parents(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.remap-", dir=parent))
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


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.absolute().parent / f".{out_dir.name}.remap-old-{os.getpid()}"
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
