"""Writing PyTorch's zip checkpoint format, streamed, for reverse conversions.

A torch.save file is a zip of stored (uncompressed) members: ``<name>/data.pkl`` (the object
graph, whose tensors name storages by key), one ``<name>/data/<key>`` member per storage, and a
few small records. Each member's data starts on a 64-byte boundary, as torch.save aligns it, so
the files also load with ``torch.load(mmap=True)`` and read back through remap's own reader.

`ZipWriter` writes members one at a time: small ones from memory, large ones from file spans
copied by the kernel (``copy_file_range``) while a second thread reads the same bytes for the
CRC-32 the zip format requires; the CRC is patched into the local header afterwards. Zip64 records
are written when a size or an offset needs them.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import OutputError
from .writer import FileSpan, Parts, copy_span

ALIGN: Final = 64
CHUNK: Final = 256 * 1024  # the CRC thread's buffer: small enough to stay in cache between read and checksum
ZIP64_LIMIT: Final = 0xFFFFFFFF
DOS_DATE: Final = 0x21  # 1980-01-01, a fixed date: the same input gives the same file
PADDING_ID: Final = 0x4246  # the extra-field id torch.save pads with ("FB")


@dataclass(frozen=True)
class _Member:
    name: bytes
    offset: int
    size: int
    crc: int


Payload = bytes | FileSpan | Parts | Any  # Any: a C-contiguous numpy array


class ZipWriter:
    """Stored members, 64-byte aligned, written in order; `close()` writes the central directory."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.members: list[_Member] = []

    def add(self, name: str, payload: Payload) -> None:
        raw_name = name.encode("utf-8")
        spans = self._spans(payload)
        data = None if spans is not None else memoryview(payload).cast("B")  # type: ignore[arg-type]
        size = sum(s.length for s in spans) if spans is not None else len(data)  # type: ignore[arg-type]
        offset = os.lseek(self.fd, 0, os.SEEK_CUR)
        zip64 = size >= ZIP64_LIMIT or offset >= ZIP64_LIMIT
        header = _local_header(raw_name, offset, size, 0, zip64)
        _write_all(self.fd, header)
        if spans is None:
            assert data is not None
            crc = zlib.crc32(data)
            _write_all(self.fd, data)
        else:
            crc = _copy_with_crc(spans, self.fd)
        os.pwrite(self.fd, struct.pack("<L", crc), offset + 14)
        self.members.append(_Member(raw_name, offset, size, crc))

    @staticmethod
    def _spans(payload: Payload) -> tuple[FileSpan, ...] | None:
        if isinstance(payload, FileSpan):
            return (payload,)
        if isinstance(payload, Parts):
            return payload.spans
        return None

    def close(self) -> None:
        start = os.lseek(self.fd, 0, os.SEEK_CUR)
        for m in self.members:
            _write_all(self.fd, _central_header(m))
        end = os.lseek(self.fd, 0, os.SEEK_CUR)
        count, size = len(self.members), end - start
        if count >= 0xFFFF or start >= ZIP64_LIMIT or size >= ZIP64_LIMIT:
            _write_all(self.fd, struct.pack("<LQHHLLQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start))
            _write_all(self.fd, struct.pack("<LLQL", 0x07064B50, 0, end, 1))
            count, size, start = min(count, 0xFFFF), min(size, ZIP64_LIMIT), min(start, ZIP64_LIMIT)
        _write_all(self.fd, struct.pack("<LHHHHLLH", 0x06054B50, 0, 0, count, count, size, start, 0))


def _local_header(name: bytes, offset: int, size: int, crc: int, zip64: bool) -> bytes:
    extra = struct.pack("<HHQQ", 0x0001, 16, size, size) if zip64 else b""
    base = offset + 30 + len(name) + len(extra)
    pad = (-(base + 4)) % ALIGN
    extra += struct.pack("<HH", PADDING_ID, pad) + b"Z" * pad
    shown = ZIP64_LIMIT if zip64 else size
    version = 45 if zip64 else 20
    return struct.pack("<LHHHHHLLLHH", 0x04034B50, version, 0, 0, 0, DOS_DATE, crc, shown, shown, len(name),
                       len(extra)) + name + extra


def _central_header(m: _Member) -> bytes:
    big = m.size >= ZIP64_LIMIT or m.offset >= ZIP64_LIMIT
    extra = struct.pack("<HHQQQ", 0x0001, 24, m.size, m.size, m.offset) if big else b""
    size = ZIP64_LIMIT if big else m.size
    offset = ZIP64_LIMIT if big else m.offset
    version = 45 if big else 20
    return struct.pack("<LHHHHHHLLLHHHHHLL", 0x02014B50, version, version, 0, 0, 0, DOS_DATE, m.crc, size, size,
                       len(m.name), len(extra), 0, 0, 0, 0, offset) + m.name + extra


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _copy_with_crc(spans: Sequence[FileSpan], out: int) -> int:
    """Copy the spans file to file in the kernel; a thread reads the same bytes for their CRC-32."""
    result: dict[str, Any] = {}
    worker = threading.Thread(target=_crc_of, args=(spans, result), name="remap-crc32")
    worker.start()
    try:
        for span in spans:
            copy_span(span, out)
    finally:
        worker.join()
    if "error" in result:
        raise OutputError(f"cannot read {result['error']} for its checksum")
    return int(result["crc"])


def _crc_of(spans: Sequence[FileSpan], result: dict[str, Any]) -> None:
    crc, buffer = 0, bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        for span in spans:
            fd = os.open(span.path, os.O_RDONLY)
            try:
                start, left = span.start, span.length
                while left > 0:
                    n = os.preadv(fd, [view[: min(left, CHUNK)]], start)
                    if n <= 0:
                        raise OSError(span.path.name)
                    crc = zlib.crc32(view[:n], crc)
                    start, left = start + n, left - n
            finally:
                os.close(fd)
    except OSError as exc:
        result["error"] = str(exc)
        return
    result["crc"] = crc


def member_data(path: Path) -> list[tuple[str, FileSpan]]:
    """The members of an existing zip, in file order, each with the span of its (stored) data."""
    import zipfile

    spans = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
            if info.compress_type != zipfile.ZIP_STORED:
                raise OutputError(f"member '{info.filename}' is compressed; remap rewrites only stored members",
                                  path.name)
            f.seek(info.header_offset)
            header = f.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            spans.append((info.filename, FileSpan(path, start, info.file_size)))
    return spans
