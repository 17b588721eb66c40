"""What remap knows about a tensor without its data: shape, dtype name, and dtype facts.

A leaf module: readers, rules, the planner and the writer all use it, and it
imports nothing from remap and never imports torch.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple


class TensorInfo(NamedTuple):
    """What planning knows about a tensor: its shape and dtype name (``float32``...)."""

    shape: tuple[int, ...]
    dtype: str


class DType(NamedTuple):
    name: str  # torch's name, e.g. "bfloat16"
    safetensors: str  # safetensors' code, e.g. "BF16"
    itemsize: int


DTYPES: Final[dict[str, DType]] = {d.name: d for d in (
    DType("float64", "F64", 8), DType("float32", "F32", 4), DType("float16", "F16", 2),
    DType("bfloat16", "BF16", 2), DType("float8_e4m3fn", "F8_E4M3", 1), DType("float8_e5m2", "F8_E5M2", 1),
    DType("int64", "I64", 8), DType("int32", "I32", 4), DType("int16", "I16", 2), DType("int8", "I8", 1),
    DType("uint64", "U64", 8), DType("uint32", "U32", 4), DType("uint16", "U16", 2), DType("uint8", "U8", 1),
    DType("bool", "BOOL", 1), DType("complex64", "C64", 8),
)}

BY_SAFETENSORS: Final[dict[str, DType]] = {d.safetensors: d for d in DTYPES.values()}

# PyTorch's typed storage classes, as pickled checkpoints name them.
STORAGE_CLASSES: Final[dict[str, str]] = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
}


def itemsize(name: str) -> int:
    return DTYPES[name].itemsize


def nbytes(info: TensorInfo) -> int:
    """Bytes of a C-contiguous tensor with ``info``'s shape and dtype."""
    return math.prod(info.shape) * itemsize(info.dtype)
