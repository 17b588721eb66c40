"""``squeeze: dim`` and ``unsqueeze: dim``: drop a dim of size 1, or add one. Views; byte-exact; each
undoes the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..tensors import TensorInfo
from .base import Doc, Field, Geometry, Raw, ShapeError, Step, TensorOp, axis, integer, register, scope


@dataclass(frozen=True)
class Squeeze(Step):
    kind = "squeeze"
    dim: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        if shape[dim] != 1:
            raise ShapeError(f"cannot squeeze dim {dim} of {list(shape)}: its size is not 1")
        return shape[:dim] + shape[dim + 1:]

    def view(self, geometry: Geometry) -> Geometry:
        dim = self.dim % len(geometry.shape)
        return Geometry(geometry.shape[:dim] + geometry.shape[dim + 1:],
                        geometry.strides[:dim] + geometry.strides[dim + 1:], geometry.offset)

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.squeeze(raw.array, axis=self.dim), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        return (Unsqueeze(self.dim % len(before.shape)),)


@dataclass(frozen=True)
class Unsqueeze(Step):
    kind = "unsqueeze"
    dim: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape) + 1, self.kind)
        return (*shape[:dim], 1, *shape[dim:])

    def view(self, geometry: Geometry) -> Geometry:
        dim = self.dim % (len(geometry.shape) + 1)
        return Geometry((*geometry.shape[:dim], 1, *geometry.shape[dim:]),
                        (*geometry.strides[:dim], 1, *geometry.strides[dim:]), geometry.offset)

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.expand_dims(raw.array, axis=self.dim % (raw.array.ndim + 1)), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        return (Squeeze(self.dim % (len(before.shape) + 1)),)


@register
class SqueezeOp(TensorOp):
    name = "squeeze"
    main = Field("squeeze", "int", help="the dim of size 1 to drop")
    doc = Doc("drops a dim of size 1 (a kernel-size-1 conv weight read as a linear weight)",
              '`squeeze: DIM`', '`unsqueeze`; exact',
              """\
- from: flows.{i:int}.conv.weight
  to: flows.{i}.linear.weight
  ops: [{squeeze: -1}]
  examples:
    - {key: flows.0.conv.weight, shape: [192, 96, 1], to: flows.0.linear.weight, shapes: [[192, 96]]}
""")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        return [Squeeze(integer(self.params["squeeze"], scope(names, info), "squeeze parameter"))]

    def inverse(self) -> TensorOp:
        return UnsqueezeOp({"unsqueeze": self.params["squeeze"]}, self.loc)


@register
class UnsqueezeOp(TensorOp):
    name = "unsqueeze"
    main = Field("unsqueeze", "int", help="where the new dim of size 1 goes")
    doc = Doc("adds a dim of size 1",
              '`unsqueeze: DIM`', '`squeeze`; exact',
              """\
- from: proj.weight
  to: proj.conv.weight
  ops: [{unsqueeze: -1}]
  examples:
    - {key: proj.weight, shape: [8, 4], to: proj.conv.weight, shapes: [[8, 4, 1]]}
""")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        return [Unsqueeze(integer(self.params["unsqueeze"], scope(names, info), "unsqueeze parameter"))]

    def inverse(self) -> TensorOp:
        return SqueezeOp({"squeeze": self.params["unsqueeze"]}, self.loc)
