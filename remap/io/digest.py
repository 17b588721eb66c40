"""Digests of stored bytes, read in bounded chunks: a whole file, or one tensor's logical bytes.

Provenance records what each output tensor was made from. A file's digest is SHA-256, which
``sha256sum`` and the Hugging Face hub (for LFS files) also show, so a user can check it. A
tensor's digest covers its bytes in C order, as safetensors would store it, so a tensor keeps its
digest whatever the file format or layout it is stored in. Hashing releases the GIL, so the
pipeline runs it in a thread beside the writer.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

from .source import StoredTensor

CHUNK: Final = 8 * 1024 * 1024
DIGEST_CHARS: Final = 16  # of SHA-256's 64 hex digits, per tensor


def file_digest(path: Path) -> str:
    """The whole file's SHA-256 (64 hex digits)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tensor_digest(tensor: StoredTensor) -> str:
    """The first DIGEST_CHARS hex digits of the SHA-256 of the tensor's bytes in C order."""
    h = hashlib.sha256()
    span = tensor.contiguous_span()
    if span is None:
        h.update(tensor.read().tobytes())
        return h.hexdigest()[:DIGEST_CHARS]
    start, left = span
    buffer = bytearray(min(CHUNK, max(left, 1)))
    view = memoryview(buffer)
    fd = os.open(tensor.storage.path, os.O_RDONLY)
    try:
        while left > 0:
            n = os.preadv(fd, [view[: min(left, CHUNK)]], start)
            if n <= 0:
                raise OSError(f"{tensor.storage.path.name} ended early")
            h.update(view[:n])
            start, left = start + n, left - n
    finally:
        os.close(fd)
    return h.hexdigest()[:DIGEST_CHARS]
