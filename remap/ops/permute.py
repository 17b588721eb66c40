"""``transpose: [a, b]`` and ``permute: [dims]``: the dims of a tensor in a new order.

A view of the stored bytes (only the strides change), so nothing is read until the output is
written; then a strided gather. Byte-exact; the inverse is the inverse permutation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError
from ..tensors import TensorInfo
from .base import Doc, Field, Geometry, Raw, ShapeError, Step, TensorOp, integer, register, scope


@dataclass(frozen=True)
class Permute(Step):
    """Dims in the order ``dims`` (each dim of the input once)."""

    kind = "permute"
    dims: tuple[int, ...]

    @property
    def args(self) -> tuple[Any, ...]:
        return self.dims

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(self.dims) != list(range(len(shape))):
            raise ShapeError(f"permute {list(self.dims)} is not a permutation of the {len(shape)} dims of "
                             f"{list(shape)}")
        return tuple(shape[d] for d in self.dims)

    def view(self, geometry: Geometry) -> Geometry:
        dims = [d % len(geometry.shape) for d in self.dims]
        return Geometry(tuple(geometry.shape[d] for d in dims), tuple(geometry.strides[d] for d in dims),
                        geometry.offset)

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.transpose(raw.array, self.dims), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        dims = [d % len(before.shape) for d in self.dims]
        return (Permute(tuple(dims.index(i) for i in range(len(dims)))),)


@register
class Transpose(TensorOp):
    name = "transpose"
    main = Field("transpose", "ints", count=2, help="the two dims to swap")
    doc = Doc("swaps two dims (Keras' [in, out] kernels to torch's [out, in])",
              '`transpose: [A, B]`', 'itself; exact',
              """\
- from: dense.kernel
  to: dense.weight
  ops: [{transpose: [0, 1]}]
  examples:
    - {key: dense.kernel, shape: [96, 192], to: dense.weight, shapes: [[192, 96]]}
""")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        ndim = len(info.shape)
        a, b = (integer(p, scope(names, info), "transpose parameter") for p in self.params["transpose"])
        dims = list(range(ndim))
        for d in (a, b):
            if not -ndim <= d < ndim:
                raise ShapeError(f"transpose: dim {d} is out of range for a {ndim}-d tensor")
        a, b = a % ndim, b % ndim
        dims[a], dims[b] = dims[b], dims[a]
        return [Permute(tuple(dims))]

    def inverse(self) -> TensorOp:
        return self


@register
class PermuteOp(TensorOp):
    name = "permute"
    main = Field("permute", "ints", help="the input's dims in their new order")
    doc = Doc("puts the dims in a new order, as torch's Tensor.permute",
              '`permute: [DIMS]`', 'the inverse permutation; exact (plain integer dims without `--like`)',
              """\
- from: conv.kernel
  to: conv.weight
  ops: [{permute: [2, 1, 0]}]
  examples:
    - {key: conv.kernel, shape: [3, 8, 16], to: conv.weight, shapes: [[16, 8, 3]]}
""")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        return [Permute(tuple(integer(p, scope(names, info), "permute parameter") for p in self.params["permute"]))]

    def check(self) -> None:
        if not self.params["permute"]:
            raise RuleError("permute needs a list of dims", self.loc)

    def inverse(self) -> TensorOp | None:
        dims = self.params["permute"]
        if not all(isinstance(d, int) for d in dims):
            return None
        return PermuteOp({"permute": tuple(dims.index(i) for i in range(len(dims)))}, self.loc)

    def why_not_reversible(self) -> str:
        if self.inverse() is not None:
            return ""
        return "has a permute with expressions, which cannot be inverted; give plain dims"
