"""PyTorch checkpoints: the zip format (torch >= 1.6) and the legacy pickle-stream format.

Both are parsed with the restricted unpickler. Storages are located, not
read: for the zip format, each ``data/<key>`` member is stored uncompressed,
so its bytes sit at a fixed offset in the file; for the legacy format the
storages follow the pickles, each as an 8-byte element count and raw bytes.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any, Final

from ...errors import SourceError
from ...tensors import itemsize
from ..source import Checkpoint, Storage
from .unpickle import PICKLE_ERRORS, RestrictedUnpickler, StorageCollector, StorageKey, finish

LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX: Final = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)


def _unpickling(path: Path, what: str) -> SourceError:
    return SourceError(f"cannot parse the {what}; the file is corrupt or not a PyTorch checkpoint", str(path))


def read_zip(path: Path) -> Checkpoint:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            pkl = [name for name in infos if name.endswith("data.pkl") and name.count("/") == 1]
            if len(pkl) != 1:
                raise SourceError("zip file without a single 'data.pkl': not a PyTorch checkpoint", str(path))
            prefix = pkl[0][: -len("data.pkl")]
            data = archive.read(pkl[0])
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SourceError(f"cannot read zip archive: {exc}", str(path)) from None
    try:
        raw = RestrictedUnpickler(io.BytesIO(data), StorageCollector()).load()
    except PICKLE_ERRORS as exc:
        raise SourceError(f"cannot parse the checkpoint's pickle: {_describe(exc)}", str(path)) from None

    def locate(key: StorageKey) -> Storage:
        info = infos.get(f"{prefix}data/{key.key}")
        if info is None:
            raise SourceError(f"storage '{key.key}' is missing from the archive (truncated?)", str(path))
        if info.compress_type != zipfile.ZIP_STORED:
            raise SourceError(f"storage '{key.key}' is compressed; re-save the checkpoint with torch.save",
                              str(path))
        return Storage(path, _member_start(path, info), info.file_size)

    return Checkpoint(path, _finish(raw, locate, path), "pytorch-zip")


def _member_start(path: Path, info: zipfile.ZipInfo) -> int:
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise SourceError(f"bad zip entry for '{info.filename}'", str(path))
    fields = _LOCAL_HEADER.unpack(header)
    name_len, extra_len = fields[-2], fields[-1]
    return int(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


def read_legacy(path: Path) -> Checkpoint:
    collector = StorageCollector()
    try:
        with open(path, "rb") as f:
            if RestrictedUnpickler(f).load() != LEGACY_MAGIC:
                raise SourceError("bad magic number: not a legacy PyTorch checkpoint", str(path))
            RestrictedUnpickler(f).load()  # protocol version
            RestrictedUnpickler(f).load()  # sys info
            raw = RestrictedUnpickler(f, collector).load()
            order = RestrictedUnpickler(f).load()
            offsets = _legacy_offsets(f, [str(k) for k in order], collector.keys, path)
    except PICKLE_ERRORS as exc:
        raise SourceError(f"cannot parse the legacy checkpoint: {_describe(exc)}", str(path)) from None

    def locate(key: StorageKey) -> Storage:
        start, nbytes = offsets[key.key]
        if key.view is None:
            return Storage(path, start, nbytes)
        _, offset, size = key.view  # a slice of the root storage, in elements
        step = itemsize(key.dtype or "uint8")
        return Storage(path, start + offset * step, size * step)

    return Checkpoint(path, _finish(raw, locate, path), "pytorch-legacy")


def _finish(raw: Any, locate: Any, path: Path) -> Any:
    try:
        return finish(raw, locate)
    except RecursionError:
        raise SourceError("the checkpoint's object graph is nested too deeply", str(path)) from None


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _legacy_offsets(f: Any, order: list[str], keys: dict[str, StorageKey], path: Path) -> dict[str, tuple[int, int]]:
    offsets: dict[str, tuple[int, int]] = {}
    end = path.stat().st_size
    pos = f.tell()
    for key in order:
        if key not in keys:
            raise SourceError(f"storage '{key}' is listed but never used (corrupt file)", str(path))
        f.seek(pos)
        head = f.read(8)
        if len(head) != 8:
            raise SourceError("file ends inside the storage data (truncated)", str(path))
        count = struct.unpack("<q", head)[0]
        nbytes = count * itemsize(keys[key].dtype or "uint8")  # untyped storages count bytes
        if count < 0 or pos + 8 + nbytes > end:
            raise SourceError("file ends inside the storage data (truncated)", str(path))
        offsets[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    return offsets
