"""Executing a recipe (remap.recipes) on stored tensors: one output tensor at a time.

Three domains, from cheapest to dearest:

- **a view of the file**: a `StoredTensor` with its own offset, shape and strides. Slices,
  selections, permutes, squeezes and reshapes of contiguous views stay here; nothing is read.
  A contiguous result is a `FileSpan` the writer copies file to file; a strided one is gathered.
- **raw elements in memory**: a numpy array of unsigned integers as wide as the dtype
  (uint16 for bfloat16), so rearranging never converts a value: every bit is kept.
- **numbers**: torch, only for numeric steps (weight-norm fold, norms, casts).

A concatenation or stack along dim 0 of contiguous inputs is a list of file spans (`Parts`):
still no tensor is loaded. Memory is bounded by one op's inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ..recipes import Recipe, Step
from ..tensors import TensorInfo, itemsize
from .source import StoredTensor
from .writer import FileSpan, Parts


@dataclass(frozen=True)
class Raw:
    """Raw elements in memory (``array``: unsigned ints of the dtype's width) and the dtype they hold."""

    array: Any
    dtype: str


Value = StoredTensor | Raw


def produce(recipe: Recipe, tensors: Mapping[str, StoredTensor]) -> Any:
    """The output's payload for the writer: a FileSpan, Parts, a numpy array, or a torch tensor."""
    inputs = [tensors[key] for key in recipe.inputs]
    kind = recipe.combine.kind
    if kind in ("concat", "stack") and not recipe.steps and not recipe.prep:
        parts = _spans(recipe.combine, inputs)
        if parts is not None:
            return parts
    if kind == "dedup":
        _check_identical(recipe, tensors)
    values = [_steps(recipe.input_steps(i), t) for i, t in enumerate(inputs)]
    value = _combine(recipe.combine, values)
    return _payload(_steps(recipe.steps, value))


def _steps(steps: tuple[Step, ...], value: Value) -> Value:
    for step in steps:
        value = _step(step, value)
    return value


def _spans(combine: Step, inputs: list[StoredTensor]) -> Parts | None:
    """Concatenating (or stacking) along dim 0 is the inputs' bytes one after the other."""
    ndim = len(inputs[0].info.shape) + (combine.kind == "stack")
    if int(combine.args[0]) % max(ndim, 1) != 0:
        return None
    spans = [t.contiguous_span() for t in inputs]
    if any(span is None for span in spans):
        return None
    return Parts(tuple(FileSpan(t.storage.path, s[0], s[1]) for t, s in zip(inputs, spans, strict=True) if s))


def first_difference(recipe: Recipe, tensors: Mapping[str, StoredTensor]) -> str | None:
    """For a dedup: the first input whose bytes differ from the first input's (after its own steps), or None."""
    values = [_payload(_steps(recipe.input_steps(i), tensors[key])) for i, key in enumerate(recipe.inputs)]
    first = materialize(values[0])
    return next((key for key, v in zip(recipe.inputs[1:], values[1:], strict=True) if materialize(v) != first), None)


def materialize(payload: Any) -> bytes:
    """A payload's bytes in memory (file spans read, a torch tensor's bytes taken as they are)."""
    if isinstance(payload, (FileSpan, Parts)):
        spans = payload.spans if isinstance(payload, Parts) else (payload,)
        return b"".join(_read_span(s.path, s.start, s.length) for s in spans)
    if type(payload).__module__.startswith("torch"):
        import torch

        payload = payload.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return bytes(memoryview(payload).cast("B"))


def _read_span(path: Path, start: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, start)
    finally:
        os.close(fd)
    if len(data) != length:
        raise SourceError("file ended early (changed while converting?)", path.name)
    return data


def _check_identical(recipe: Recipe, tensors: Mapping[str, StoredTensor]) -> None:
    differs = first_difference(recipe, tensors)
    if differs is not None:
        path = tensors[recipe.inputs[0]].storage.path
        raise SourceError(f"'{differs}' differs from '{recipe.inputs[0]}', but the rule keeps one copy of them "
                          "(dedup); the copies must be identical", path.name)


def _combine(combine: Step, inputs: list[Value]) -> Value:
    import numpy as np

    kind = combine.kind
    if kind in ("single", "dedup"):
        return inputs[0]
    if kind == "fold_weight_norm":
        import torch

        g, v = (_to_torch(t) for t in inputs)
        return _raw_from_torch(torch._weight_norm(v, g, int(combine.args[0])))
    raws = [_raw(t) if isinstance(t, StoredTensor) else t for t in inputs]
    arrays = [r.array for r in raws]
    axis = int(combine.args[0])
    joined = np.concatenate(arrays, axis=axis) if kind == "concat" else np.stack(arrays, axis=axis)
    return Raw(joined, raws[0].dtype)


def _step(step: Step, value: Value) -> Value:
    if step.kind in ("norm_except", "cast"):
        return _numeric(step, value)
    if isinstance(value, StoredTensor):
        viewed = _view_step(step, value)
        if viewed is not None:
            return viewed
        value = _raw(value)
    return Raw(_array_step(step, value.array), value.dtype)


def _view_step(step: Step, t: StoredTensor) -> StoredTensor | None:  # noqa: PLR0911 - one return per kind
    """``step`` as a view of the same bytes, or None when it is not one (a reshape of a strided view)."""
    shape, strides, args = list(t.info.shape), list(t._strides()), [int(a) for a in step.args]
    if step.kind in ("slice", "select", "squeeze") and shape:
        args[0] %= len(shape)
    if step.kind == "permute":
        args = [a % len(shape) for a in args]
    if step.kind == "slice":
        dim, start, stop = args
        return _with(t, [*shape[:dim], stop - start, *shape[dim + 1:]], strides, t.offset + start * strides[dim])
    if step.kind == "select":
        dim, index = args
        return _with(t, shape[:dim] + shape[dim + 1:], strides[:dim] + strides[dim + 1:],
                     t.offset + index * strides[dim])
    if step.kind == "permute":
        return _with(t, [shape[d] for d in args], [strides[d] for d in args], t.offset)
    if step.kind == "squeeze":
        return _with(t, shape[:args[0]] + shape[args[0] + 1:], strides[:args[0]] + strides[args[0] + 1:], t.offset)
    if step.kind == "unsqueeze":
        dim = args[0] % (len(shape) + 1)
        return _with(t, [*shape[:dim], 1, *shape[dim:]], [*strides[:dim], 1, *strides[dim:]], t.offset)
    if step.kind == "reshape" and t.contiguous_span() is not None:
        return _with(t, args, None, t.offset)
    return None


def _with(t: StoredTensor, shape: list[int], strides: list[int] | None, offset: int) -> StoredTensor:
    return replace(t, info=TensorInfo(tuple(shape), t.info.dtype), offset=offset,
                   stride=tuple(strides) if strides is not None else None)


def _array_step(step: Step, array: Any) -> Any:
    import numpy as np

    args = [int(a) for a in step.args]
    if step.kind == "slice":
        index: list[Any] = [slice(None)] * array.ndim
        index[args[0]] = slice(args[1], args[2])
        return array[tuple(index)]
    if step.kind == "select":
        return np.take(array, args[1], axis=args[0])
    if step.kind == "permute":
        return np.transpose(array, args)
    if step.kind == "reshape":
        return np.ascontiguousarray(array).reshape(args)
    if step.kind == "squeeze":
        return np.squeeze(array, axis=args[0])
    return np.expand_dims(array, axis=args[0] % (array.ndim + 1))


def _numeric(step: Step, value: Value) -> Raw:
    import torch

    tensor = _to_torch(value)
    if step.kind == "norm_except":
        return _raw_from_torch(torch.norm_except_dim(tensor, 2, int(step.args[0])))
    return _raw_from_torch(tensor.to(getattr(torch, str(step.args[0]))))


def _uint(dtype: str) -> Any:
    import numpy as np

    return {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize(dtype)]


def _raw(t: StoredTensor) -> Raw:
    """The stored elements in memory, bit for bit (no float conversion)."""
    return Raw(t.read().view(_uint(t.info.dtype)).reshape(t.info.shape), t.info.dtype)


def _to_torch(value: Value) -> Any:
    import numpy as np
    import torch

    if isinstance(value, StoredTensor):
        return value.load()
    data = np.ascontiguousarray(value.array)
    dtype = getattr(torch, value.dtype)
    if data.size == 0:
        return torch.empty(data.shape, dtype=dtype)
    return torch.frombuffer(bytearray(data.tobytes()), dtype=dtype).reshape(data.shape)


def _raw_from_torch(tensor: Any) -> Raw:
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return Raw(flat.view(_uint(dtype)).reshape(tuple(tensor.shape)), dtype)


def _payload(value: Value) -> Any:
    import numpy as np

    if isinstance(value, StoredTensor):
        span = value.contiguous_span()
        if span is not None:
            return FileSpan(value.storage.path, span[0], span[1])
        return value.read()
    array = np.ascontiguousarray(value.array)
    assert math.prod(array.shape) == array.size
    return array.reshape(-1).view(np.uint8)
