"""Writing a checkpoint's object graph as torch.save's ``data.pkl``, opcode by opcode (protocol 2).

Only what a reverse conversion writes: dicts, lists, tuples, strings, numbers, booleans, None,
`TensorRef` (a tensor whose bytes are storage ``key``), and `Record`s of the classes that original
frameworks expect back and that are plain data (``argparse.Namespace``). Everything is written as
torch.save writes it, so ``torch.load`` (with ``argparse.Namespace`` allowed) and remap's own
restricted reader both read it. No object is ever pickled by Python's own machinery: the writer
emits opcodes for known shapes only, so nothing in a record can smuggle code into the file.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import OutputError
from .source import Record

STORAGE_TYPES: Final = {
    "float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage", "bfloat16": "BFloat16Storage",
    "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
    "uint8": "ByteStorage", "bool": "BoolStorage", "complex64": "ComplexFloatStorage",
}
RECORD_CLASSES: Final = frozenset({"argparse.Namespace"})


@dataclass(frozen=True)
class TensorRef:
    """A tensor in the written graph: C-contiguous, ``numel`` elements of ``dtype`` in storage ``key``."""

    key: str
    dtype: str
    shape: tuple[int, ...]


def dumps(tree: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _Writer(out).save(tree, 0)
    out.write(b".")
    return out.getvalue()


class _Writer:
    def __init__(self, out: io.BytesIO) -> None:
        self.out = out

    def save(self, obj: Any, depth: int) -> None:  # noqa: PLR0912 - one branch per kind of value
        if depth > 100:
            raise OutputError("the checkpoint to write is nested too deeply")
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True or obj is False:
            w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            w(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(obj, TensorRef):
            self._tensor(obj, depth)
        elif isinstance(obj, Record):
            self._record(obj, depth)
        elif isinstance(obj, Mapping):
            w(b"}(")
            for key, value in obj.items():
                self.save(key, depth + 1)
                self.save(value, depth + 1)
            w(b"u")
        elif isinstance(obj, list):
            w(b"](")
            for value in obj:
                self.save(value, depth + 1)
            w(b"e")
        elif isinstance(obj, tuple):
            w(b"(")
            for value in obj:
                self.save(value, depth + 1)
            w(b"t")
        else:
            raise OutputError(f"cannot write a {type(obj).__name__} into a checkpoint")

    def _int(self, n: int) -> None:
        if 0 <= n < 256:
            self.out.write(b"K" + bytes([n]))
        elif 0 <= n < 65536:
            self.out.write(b"M" + struct.pack("<H", n))
        elif -(2**31) <= n < 2**31:
            self.out.write(b"J" + struct.pack("<i", n))
        else:
            data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            if len(data) > 255:
                raise OutputError(f"integer {n} is too large to write")
            self.out.write(b"\x8a" + bytes([len(data)]) + data)

    def _global(self, module: str, name: str) -> None:
        self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def _tensor(self, ref: TensorRef, depth: int) -> None:
        if ref.dtype not in STORAGE_TYPES:
            raise OutputError(f"cannot write a {ref.dtype} tensor into a PyTorch checkpoint")
        numel = 1
        for n in ref.shape:
            numel *= n
        strides, step = [], 1
        for n in reversed(ref.shape):
            strides.append(step)
            step *= n
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out.write(b"(")
        self.out.write(b"(")
        self.save("storage", depth + 1)
        self._global("torch", STORAGE_TYPES[ref.dtype])
        self.save(ref.key, depth + 1)
        self.save("cpu", depth + 1)
        self.save(numel, depth + 1)
        self.out.write(b"tQ")
        self.save(0, depth + 1)
        self.save(tuple(ref.shape), depth + 1)
        self.save(tuple(reversed(strides)), depth + 1)
        self.out.write(b"\x89")
        self._global("collections", "OrderedDict")
        self.out.write(b")Rt")
        self.out.write(b"R")

    def _record(self, record: Record, depth: int) -> None:
        if record.class_name not in RECORD_CLASSES:
            raise OutputError(f"cannot write a {record.class_name} back; only {', '.join(sorted(RECORD_CLASSES))}")
        module, _, name = record.class_name.rpartition(".")
        self._global(module, name)
        self.out.write(b")\x81")
        self.save(dict(record.state), depth + 1)
        self.out.write(b"b")
