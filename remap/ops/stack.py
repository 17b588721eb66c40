"""``stack: DIM`` / ``{dim, over}`` and ``unstack: {dim, index}``: tensors along a new dim, and back.

``stack`` joins several same-shape sources along a new dim (per-codebook tables into one 3-d table);
along dim 0 of contiguous inputs it is a file-to-file copy. ``unstack`` makes one target per index
along a dim, each a view (`Select`) of the source. Byte-exact; each is the other read backwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..tensors import TensorInfo
from .base import (
    Backwards,
    Combine,
    Doc,
    Geometry,
    Output,
    Raw,
    ShapeError,
    Step,
    Structure,
    axis,
    register,
    same_shapes,
    undo_all,
)


@dataclass(frozen=True)
class Select(Step):
    """Index ``index`` along ``dim``, which goes away: one output of an unstack."""

    kind = "select"
    dim: int
    index: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        if not 0 <= self.index < shape[dim]:
            raise ShapeError(f"index {self.index} is outside dim {dim} of size {shape[dim]}")
        return shape[:dim] + shape[dim + 1:]

    def view(self, geometry: Geometry) -> Geometry:
        dim = self.dim % len(geometry.shape) if geometry.shape else self.dim
        return Geometry(geometry.shape[:dim] + geometry.shape[dim + 1:],
                        geometry.strides[:dim] + geometry.strides[dim + 1:],
                        geometry.offset + self.index * geometry.strides[dim])

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.take(raw.array, self.index, axis=self.dim), raw.dtype)


@dataclass(frozen=True)
class Stack(Combine):
    kind: ClassVar[str] = "stack"
    dim: int = 0

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        first = same_shapes(self.kind, shapes)
        dim = axis(self.dim, len(first) + 1, self.kind)
        return (*first[:dim], len(shapes), *first[dim:])

    def run(self, inputs: Sequence[Raw]) -> Raw:
        import numpy as np

        return Raw(np.stack([r.array for r in inputs], axis=self.dim), inputs[0].dtype)

    def joins_bytes(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        return self.dim % max(len(shapes[0]) + 1, 1) == 0

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        return (Select(self.dim % (len(inputs[0].shape) + 1), index),)


@register
@dataclass(frozen=True)
class StackStructure(Structure):
    name = "stack"
    fields = ("dim", "over")
    arity = "stack takes either a list of sources or one source with 'over', and one target"
    doc = Doc("joins several same-shape sources along a new dim",
              '`stack: DIM` or `stack: {dim, over}`', 'a selection of the target per source; exact',
              """\
- from: heads.{c:int}.weight
  stack: {dim: 0, over: c}
  to: heads.weight
  examples:
    - heads.3.weight: heads.weight
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_targets == 1 and (n_sources > 1) != (self.over is not None)

    def combine(self) -> Combine:
        return Stack(self.dim)

    def source_shapes(self, combined: TensorInfo, n_sources: int, names: Mapping[str, Any]) -> list[tuple[int, ...]]:
        return [_drop(tuple(combined.shape), self.dim)] * n_sources

    def over_sources(self, combined: TensorInfo, names: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        shape = tuple(combined.shape)
        return shape[self.dim % len(shape)], _drop(shape, self.dim)


@register
@dataclass(frozen=True)
class Unstack(Structure):
    name = "unstack"
    fields = ("dim", "index")
    arity = "unstack takes one source, an 'index' name, and one target that uses it"
    doc = Doc("one target per index along a dim; the target names the index",
              '`unstack: {dim, index}`', 'a stack of the targets; exact',
              """\
- from: codebook.weight
  unstack: {dim: 0, index: c}
  to: codebooks.{c}.embed
  examples:
    - key: codebook.weight
      shape: [2, 4, 3]
      to: [codebooks.0.embed, codebooks.1.embed]
      shapes: [[4, 3], [4, 3]]
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 1 and n_targets == 1 and self.index is not None

    def outputs(self, n_targets: int, names: Mapping[str, Any], info: TensorInfo) -> list[Output]:
        assert self.index is not None
        shape = tuple(info.shape)
        dim = axis(self.dim, len(shape), "dim")
        return [Output(0, {self.index: str(k)}, (Select(dim, k),)) for k in range(shape[dim])]

    def backwards(self, outputs: Sequence[tuple[str, tuple[Step, ...]]], combined: TensorInfo) -> Backwards:
        parts = sorted(outputs, key=lambda o: _head(o[1]).index)
        undo = tuple(undo_all(steps[1:], _head(steps).info(combined)) for _, steps in parts)
        return tuple(target for target, _ in parts), Stack(_head(parts[0][1]).dim), undo

    def combined_from(self, parts: Sequence[TensorInfo]) -> TensorInfo:
        return TensorInfo(Stack(self.dim).shape([tuple(p.shape) for p in parts]), parts[0].dtype)


def _head(steps: tuple[Step, ...]) -> Select:
    head = steps[0] if steps else None
    if not isinstance(head, Select):
        raise ShapeError("an unstack's output does not start with its selection")
    return head


def _drop(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    d = dim % len(shape)
    return shape[:d] + shape[d + 1:]
