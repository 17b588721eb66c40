"""PyTorch checkpoints: the zip format (torch >= 1.6) and the legacy pickle-stream format.

Both are parsed with the restricted unpickler. Storages are located, not read: for the zip format,
each ``data/<key>`` member is stored uncompressed, so its bytes sit at a fixed offset in the file; for
the legacy format the storages follow the pickles, each as an 8-byte element count and raw bytes.

Every bound is relative to the pickle's size: what its calls may build (`unpickle.Budget`), how large
its expanded tree may be (`finish`), and how far a compressed ``data.pkl`` may inflate.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from ...errors import SourceError
from ...tensors import itemsize
from ..source import Checkpoint, Storage
from .finish import BadStorage, finish
from .limits import graph_budget, inflate_budget
from .picklescan import PickleRefused, Truncated
from .unpickle import PICKLE_ERRORS, StorageCollector, StorageKey, load

LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX: Final = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)
_ZIP_ERRORS: Final = (zipfile.BadZipFile, OSError, EOFError, ValueError, LookupError, NotImplementedError,
                      RuntimeError, struct.error)
_FIRST_READ: Final = 1 << 20


def read_zip(path: Path) -> Checkpoint:
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = _members(archive, path)
            pkl = [name for name in infos if name.endswith("data.pkl") and name.count("/") == 1]
            if len(pkl) != 1:
                raise SourceError("zip file without a single 'data.pkl': not a PyTorch checkpoint", str(path))
            data = _read_member(archive, infos[pkl[0]], size, path)
    except SourceError:
        raise
    except _ZIP_ERRORS as exc:
        raise SourceError(f"cannot read zip archive: {_describe(exc)}", str(path)) from None
    prefix = pkl[0][: -len("data.pkl")]
    raw, _ = _unpickle(path, "checkpoint's pickle", lambda: load(data, 0, StorageCollector()))
    starts: dict[str, Storage] = {}
    with open(path, "rb") as f:

        def locate(key: StorageKey) -> Storage:
            if key.key not in starts:
                starts[key.key] = _zip_storage(f, path, infos.get(f"{prefix}data/{key.key}"), key, size)
            return starts[key.key]

        tree = finish(raw, locate, graph_budget(len(data)), str(path))
    return Checkpoint(path, tree, "pytorch-zip")


def _members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename in infos:  # torch.load reads the first, zipfile the last: refuse the ambiguity
            raise SourceError(f"the zip archive holds two members named '{info.filename}'; refusing an ambiguous "
                              "file (torch.save never writes one)", str(path))
        infos[info.filename] = info
    return infos


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, path: Path) -> bytes:
    """A member's bytes; a compressed one may not inflate beyond `inflate_budget` (a zip bomb)."""
    limit = file_size if info.compress_type == zipfile.ZIP_STORED else inflate_budget(file_size)
    if info.file_size > limit and info.compress_type == zipfile.ZIP_STORED:
        raise SourceError(f"'{info.filename}' is larger than the file (truncated?)", str(path))
    if info.file_size > limit:
        raise SourceError(f"'{info.filename}' would inflate to {info.file_size} bytes from a {file_size}-byte file "
                          "(a zip bomb?); torch.save stores it uncompressed", str(path))
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"'{info.filename}' inflates past {limit} bytes (a zip bomb?)", str(path))
    return data


def _zip_storage(f: IO[bytes], path: Path, info: zipfile.ZipInfo | None, key: StorageKey, file_size: int) -> Storage:
    if info is None:
        raise SourceError(f"storage '{key.key}' is missing from the archive (truncated?)", str(path))
    if info.compress_type != zipfile.ZIP_STORED:
        raise SourceError(f"storage '{key.key}' is compressed; re-save the checkpoint with torch.save", str(path))
    start = _member_start(f, path, info)
    if start + info.file_size > file_size or info.compress_size != info.file_size:
        raise SourceError(f"storage '{key.key}' reaches past the end of the file (truncated?)", str(path))
    return Storage(path, start, info.file_size)


def _member_start(f: IO[bytes], path: Path, info: zipfile.ZipInfo) -> int:
    f.seek(info.header_offset)
    header = f.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise SourceError(f"bad zip entry for '{info.filename}'", str(path))
    fields = _LOCAL_HEADER.unpack(header)
    name_len, extra_len = fields[-2], fields[-1]
    return int(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


def _unpickle(path: Path, what: str, run: Callable[[], Any]) -> Any:
    """Run an unpickling step; every way a hostile pickle can fail becomes one SourceError."""
    try:
        return run()
    except PickleRefused as exc:
        raise SourceError(str(exc), str(path)) from None
    except Truncated:
        raise SourceError(f"cannot parse the {what}: UnpicklingError: pickle data was truncated", str(path)) from None
    except MemoryError:
        raise SourceError(f"the {what} asks for more memory than this machine has (corrupt or hostile file)",
                          str(path)) from None
    except RecursionError:
        raise SourceError("the checkpoint's object graph is nested too deeply", str(path)) from None
    except PICKLE_ERRORS as exc:
        raise SourceError(f"cannot parse the {what}: {_describe(exc)}", str(path)) from None


class _PickleStream:
    """The legacy format's pickles, back to back at the start of the file: read as far as they reach."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size = f, size
        self.data = f.read(min(size, _FIRST_READ))
        self.pos = 0

    def load(self, persistent: Callable[[Any], Any] | None = None) -> Any:
        while True:
            try:
                obj, self.pos = load(self.data, self.pos, persistent)
                return obj
            except Truncated as exc:
                if len(self.data) >= self.size or exc.need > self.size:
                    raise
                self.data += self.f.read(max(exc.need, 2 * len(self.data)) - len(self.data))


def read_legacy(path: Path) -> Checkpoint:
    collector = StorageCollector()
    with open(path, "rb") as f:
        stream = _PickleStream(f, path.stat().st_size)
        what = "legacy checkpoint"
        if _unpickle(path, what, stream.load) != LEGACY_MAGIC:
            raise SourceError("bad magic number: not a legacy PyTorch checkpoint", str(path))
        _unpickle(path, what, stream.load)  # protocol version
        _unpickle(path, what, stream.load)  # sys info
        raw = _unpickle(path, what, lambda: stream.load(collector))
        order = _unpickle(path, what, stream.load)
    offsets = _legacy_offsets(path, stream.pos, order, collector.keys)

    def locate(key: StorageKey) -> Storage:
        if key.key not in offsets:
            raise BadStorage(f"its storage '{key.key}' is not in the file (corrupt file)")
        start, nbytes = offsets[key.key]
        if key.view is None:
            return Storage(path, start, nbytes)
        _, offset, size = key.view  # a slice of the root storage, in elements
        step = itemsize(key.dtype or "uint8")
        if offset < 0 or size < 0 or (offset + size) * step > nbytes:
            raise BadStorage(f"its storage view ({size} elements from element {offset}) reaches outside its root "
                             f"storage '{key.key}' of {nbytes // step} elements (corrupt file)")
        return Storage(path, start + offset * step, size * step)

    return Checkpoint(path, finish(raw, locate, graph_budget(stream.pos), str(path)), "pytorch-legacy")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _legacy_offsets(path: Path, pos: int, order: Any, keys: dict[str, StorageKey]) -> dict[str, tuple[int, int]]:
    if type(order) is not list or not all(type(k) is str for k in order):
        raise SourceError("the legacy checkpoint's storage list is not a list of keys (corrupt file)", str(path))
    offsets: dict[str, tuple[int, int]] = {}
    end = path.stat().st_size
    with open(path, "rb") as f:
        for key in order:
            if key not in keys:
                raise SourceError(f"storage '{key}' is listed but never used (corrupt file)", str(path))
            if key in offsets:
                raise SourceError(f"storage '{key}' is listed twice (corrupt file)", str(path))
            f.seek(pos)
            head = f.read(8)
            count = struct.unpack("<q", head)[0] if len(head) == 8 else -1
            nbytes = count * itemsize(keys[key].dtype or "uint8")  # untyped storages count bytes
            if count < 0 or pos + 8 + nbytes > end:
                raise SourceError("file ends inside the storage data (truncated)", str(path))
            offsets[key] = (pos + 8, nbytes)
            pos += 8 + nbytes
    return offsets

