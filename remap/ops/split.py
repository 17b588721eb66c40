"""``split: DIM`` or ``{dim, sizes}``: one tensor cut along a dim into the rule's targets, in order.

Each target is a slice of the source, a view of its bytes: along dim 0 of a contiguous tensor it is
a plain file-to-file copy. Byte-exact. Read backwards, the parts are concatenated again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..tensors import TensorInfo
from .base import (
    Backwards,
    Doc,
    Geometry,
    Output,
    Raw,
    ShapeError,
    Step,
    Structure,
    axis,
    integer,
    register,
    undo_all,
)
from .concat import Concat


@dataclass(frozen=True)
class Slice(Step):
    """Elements ``start`` to ``stop`` along ``dim``: one part of a split."""

    kind = "slice"
    dim: int
    start: int
    stop: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        if not 0 <= self.start <= self.stop <= shape[dim]:
            raise ShapeError(f"slice [{self.start}:{self.stop}] is outside dim {dim} of size {shape[dim]}")
        return (*shape[:dim], self.stop - self.start, *shape[dim + 1:])

    def view(self, geometry: Geometry) -> Geometry:
        dim = self.dim % len(geometry.shape) if geometry.shape else self.dim
        shape = (*geometry.shape[:dim], self.stop - self.start, *geometry.shape[dim + 1:])
        return Geometry(shape, geometry.strides, geometry.offset + self.start * geometry.strides[dim])

    def run(self, raw: Raw) -> Raw:
        index: list[Any] = [slice(None)] * raw.array.ndim
        index[self.dim] = slice(self.start, self.stop)
        return Raw(raw.array[tuple(index)], raw.dtype)


@register
@dataclass(frozen=True)
class Split(Structure):
    name = "split"
    fields = ("dim", "sizes")
    arity = "split takes one source and a list of two or more targets"
    doc = Doc("cuts one tensor along a dim into the targets, in order: equal parts, or `sizes`",
              '`split: DIM` or `split: {dim, sizes}`', 'a concatenation of the targets; exact',
              """\
- from: fused.{p:weight|bias}
  split: {dim: 0, sizes: [8, "shape[0] - 8"]}
  to: ["first.{p}", "second.{p}"]
  examples:
    - {key: fused.bias, shape: [20], to: [first.bias, second.bias], shapes: [[8], [12]]}
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 1 and n_targets >= 2 and (self.sizes is None or len(self.sizes) == n_targets)

    def outputs(self, n_targets: int, names: Mapping[str, Any], info: TensorInfo) -> list[Output]:
        shape = tuple(info.shape)
        dim = axis(self.dim, len(shape), "dim")
        if self.sizes is None:
            if shape[dim] % n_targets:
                raise ShapeError(f"cannot split dim {dim} of size {shape[dim]} into {n_targets} equal parts")
            sizes = [shape[dim] // n_targets] * n_targets
        else:
            sizes = [integer(s, {**names, "shape": shape}, "split size") for s in self.sizes]
            if sum(sizes) != shape[dim] or min(sizes) < 0:
                raise ShapeError(f"split sizes {sizes} do not add up to dim {dim} of size {shape[dim]}")
        found, start = [], 0
        for slot, size in enumerate(sizes):
            found.append(Output(slot, {}, (Slice(dim, start, start + size),)))
            start += size
        return found

    def backwards(self, outputs: Sequence[tuple[str, tuple[Step, ...]]], combined: TensorInfo) -> Backwards:
        parts = sorted(outputs, key=lambda o: _head(o[1]).start)
        head = _head(parts[0][1])
        undo = tuple(undo_all(steps[1:], _head(steps).info(combined)) for _, steps in parts)
        return tuple(target for target, _ in parts), Concat(head.dim), undo

    def combined_from(self, parts: Sequence[TensorInfo]) -> TensorInfo:
        return TensorInfo(Concat(self.dim).shape([tuple(p.shape) for p in parts]), parts[0].dtype)


def _head(steps: tuple[Step, ...]) -> Slice:
    head = steps[0] if steps else None
    if not isinstance(head, Slice):
        raise ShapeError("a split's output does not start with its slice")
    return head
