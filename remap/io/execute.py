"""Running a recipe (remap.ops.recipe) on stored tensors: one output tensor at a time.

Three domains, from cheapest to dearest:

- **a view of the file**: a `StoredTensor` with its own offset, shape and strides. A step that is a
  view (`Step.view`: slices, selections, permutes, squeezes, reshapes of contiguous views) stays
  here; nothing is read. A contiguous result is a `FileSpan` the writer copies file to file; a
  strided one is gathered.
- **raw elements in memory**: a `Raw` array of unsigned integers as wide as the dtype (uint16 for
  bfloat16), so rearranging never converts a value: every bit is kept.
- **numbers**: for the steps that compute (casts, weight norms), inside the step.

A combine whose output is its inputs' bytes one after another (a concatenation or stack along dim
0 of contiguous inputs) is a list of file spans (`Parts`): still no tensor is loaded. Memory is
bounded by one op's inputs. Nothing here knows an op by name: each step and combine says what it is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import SourceError
from ..ops import Geometry, Raw, Recipe, Step
from ..tensors import TensorInfo
from .source import StoredTensor
from .writer import FileSpan, Parts

Value = StoredTensor | Raw


def produce(recipe: Recipe, tensors: Mapping[str, StoredTensor]) -> Any:
    """The output's payload for the writer: a FileSpan, Parts, or a flat uint8 numpy array."""
    inputs = [tensors[key] for key in recipe.inputs]
    if not recipe.steps and not recipe.prep:
        parts = _spans(recipe, inputs)
        if parts is not None:
            return parts
    if recipe.combine.identical:
        _check_identical(recipe, tensors)
    values = [_steps(recipe.input_steps(i), t) for i, t in enumerate(inputs)]
    if recipe.combine.first_only:
        value = values[0]
    else:
        value = recipe.combine.run([_raw(v) if isinstance(v, StoredTensor) else v for v in values])
    return _payload(_steps(recipe.steps, value))


def _steps(steps: tuple[Step, ...], value: Value) -> Value:
    for step in steps:
        if isinstance(value, StoredTensor):
            viewed = step.view(_geometry(value))
            if viewed is not None:
                value = _with(value, viewed)
                continue
            value = _raw(value)
        value = step.run(value)
    return value


def _spans(recipe: Recipe, inputs: list[StoredTensor]) -> Parts | None:
    """A combine whose output is the inputs' bytes one after another: file spans, nothing read."""
    if not recipe.combine.joins_bytes([tuple(t.info.shape) for t in inputs]):
        return None
    spans = [t.contiguous_span() for t in inputs]
    if any(span is None for span in spans):
        return None
    return Parts(tuple(FileSpan(t.storage.path, s[0], s[1]) for t, s in zip(inputs, spans, strict=True) if s))


def first_difference(recipe: Recipe, tensors: Mapping[str, StoredTensor]) -> str | None:
    """For a combine of identical copies: the first input whose bytes differ from the first's, or None."""
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
                          f"({recipe.combine.kind}); the copies must be identical", path.name)


def _geometry(t: StoredTensor) -> Geometry:
    return Geometry(tuple(t.info.shape), tuple(t._strides()), t.offset)


def _with(t: StoredTensor, geometry: Geometry) -> StoredTensor:
    return replace(t, info=TensorInfo(geometry.shape, t.info.dtype), offset=geometry.offset, stride=geometry.strides)


def _uint(dtype: str) -> Any:
    from ..ops.numbers import uint

    return uint(dtype)


def _raw(t: StoredTensor) -> Raw:
    """The stored elements in memory, bit for bit (no float conversion)."""
    return Raw(t.read().view(_uint(t.info.dtype)).reshape(t.info.shape), t.info.dtype)


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
