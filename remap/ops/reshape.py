"""``reshape: [sizes]``: the same elements in a new shape (one size may be -1), as torch.reshape.

A view when the input is contiguous; otherwise the elements are gathered first. Byte-exact. Undone by
reshaping back to the input's shape; reading a rule file backwards (no original checkpoint) needs
``back: [sizes]``, the shape that undoes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError
from ..tensors import TensorInfo
from .base import Doc, Field, Geometry, Raw, ShapeError, Step, TensorOp, integer, register, scope


@dataclass(frozen=True)
class Reshape(Step):
    kind = "reshape"
    sizes: tuple[int, ...]

    @property
    def args(self) -> tuple[Any, ...]:
        return self.sizes

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 0 for n in self.sizes) or math.prod(self.sizes) != math.prod(shape):
            raise ShapeError(f"cannot reshape {list(shape)} ({math.prod(shape)} elements) to {list(self.sizes)}")
        return self.sizes

    def view(self, geometry: Geometry) -> Geometry | None:
        if not geometry.contiguous:
            return None
        return Geometry(self.sizes, _c_strides(self.sizes), geometry.offset)

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.ascontiguousarray(raw.array).reshape(self.sizes), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        return (Reshape(tuple(before.shape)),)


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def fill_minus_one(ints: list[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve one ``-1`` entry from the element count, as torch.reshape does."""
    if ints.count(-1) > 1:
        raise ShapeError(f"reshape {ints}: at most one -1")
    if -1 not in ints:
        return tuple(ints)
    known = math.prod(n for n in ints if n != -1)
    total = math.prod(shape)
    if known == 0 or total % known:
        raise ShapeError(f"cannot reshape {list(shape)} to {ints}")
    return tuple(total // known if n == -1 else n for n in ints)


@register
class ReshapeOp(TensorOp):
    name = "reshape"
    main = Field("reshape", "ints", help="the new shape; one size may be -1")
    extras = (Field("back", "ints", required=False, help="the shape that undoes it, for reading rules backwards"),)
    doc = Doc("gives the elements a new shape; `back:` says the shape that undoes it",
              '`reshape: [SIZES]`, with `back: [SIZES]`',
              "a reshape to the input's shape; exact (needs `back` without `--like`)",
              """\
- from: table
  to: table_3d
  ops:
    - reshape: ["shape[0]", heads, -1]
      back: ["shape[0]", -1]
  examples:
    - {key: table, shape: [5, 8], to: table_3d, shapes: [[5, 2, 4]]}
""", "{heads: 2}")

    def check(self) -> None:
        if not self.params["reshape"]:
            raise RuleError("reshape needs a list of dims", self.loc)

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        ints = [integer(p, scope(names, info), "reshape parameter") for p in self.params["reshape"]]
        return [Reshape(fill_minus_one(ints, tuple(info.shape)))]

    def inverse(self) -> TensorOp | None:
        back = self.params.get("back")
        if back is None:
            return None
        return ReshapeOp({"reshape": back, "back": self.params["reshape"]}, self.loc)

    def why_not_reversible(self) -> str:
        return "" if self.inverse() is not None else (
            "has a reshape without 'back:', so a reverse conversion cannot undo it")
