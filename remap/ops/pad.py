"""``pad: {dim, to, value}`` and ``slice: {dim, start, stop, fill}``: rows added to, or cut from, a dim.

Vocabularies are often padded to a multiple (of 8, 64, 128) in one framework and not in the other.
``pad`` appends rows of ``value`` (default 0) until the dim has ``to`` rows; undone by a slice, exactly.
``slice`` keeps rows ``start`` to ``stop``; the rows it cuts are gone, so it is undone only when the
rule says what they held: with ``fill``, a reverse conversion pads them back with that value, which
gives an equivalent model when those rows are padding no input ever reaches. Reading rules backwards
(without ``--like``) also needs ``back``, the dim's size before the op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError
from ..tensors import DTYPES, TensorInfo
from .base import (
    Doc,
    Field,
    Raw,
    Reversibility,
    ShapeError,
    Step,
    TensorOp,
    axis,
    integer,
    number,
    register,
    scope,
)
from .numbers import scalar_bits
from .split import Slice


@dataclass(frozen=True)
class Pad(Step):
    """``before`` and ``after`` elements of ``value`` added along ``dim``."""

    kind = "pad"
    dim: int
    before: int
    after: int
    value: float = 0

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        if self.before < 0 or self.after < 0:
            raise ShapeError(f"pad: cannot add a negative number of rows ({self.before}, {self.after})")
        return (*shape[:dim], self.before + shape[dim] + self.after, *shape[dim + 1:])

    def dtype(self, dtype: str) -> str:
        if self.value and (dtype not in DTYPES or dtype == "bool"):
            raise ShapeError(f"pad: cannot fill a {dtype} tensor with {self.value}")
        return dtype

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        bits = scalar_bits(self.value, raw.dtype) if self.value else 0
        widths = [(0, 0)] * raw.array.ndim
        widths[self.dim % raw.array.ndim] = (self.before, self.after)
        return Raw(np.pad(raw.array, widths, constant_values=bits), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        dim = self.dim % len(before.shape)
        return (Slice(dim, self.before, self.before + before.shape[dim]),)


@dataclass(frozen=True)
class Trim(Slice):
    """A slice the rule file asked for (not a split's part): undone by padding back with ``fill``."""

    fill: float | None = None

    @property
    def args(self) -> tuple[Any, ...]:
        return self.dim, self.start, self.stop

    @property
    def reversibility(self) -> Reversibility:
        return "none" if self.fill is None else "equivalent"

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        if self.fill is None:
            raise ShapeError(f"{self} cuts rows that a reverse conversion cannot restore; give the slice a 'fill' "
                             "if they are padding")
        dim = self.dim % len(before.shape)
        return (Pad(dim, self.start, before.shape[dim] - self.stop, self.fill),)


@register
class PadOp(TensorOp):
    name = "pad"
    fields = (Field("dim", "int", required=False, help="the dim to pad (default 0)"),
              Field("to", "int", help="the dim's size after padding"),
              Field("value", "number", required=False, help="what the new rows hold (default 0)"))
    extras = (Field("back", "int", required=False, help="the dim's size before padding, for reading rules "
                                                        "backwards"),)
    doc = Doc("appends rows of `value` (default 0) along a dim until it has `to` rows: a vocabulary padded to a "
              "multiple", "`pad: {dim, to, value}`, with `back: SIZE` for reading rules backwards",
              "`slice`; exact",
              """\
- from: embed.weight
  to: embed_tokens.weight
  ops: [{pad: {to: "(shape[0] + 7) // 8 * 8"}, back: vocab}]
  examples:
    - {key: embed.weight, shape: [30, 4], to: embed_tokens.weight, shapes: [[32, 4]]}
""", "{vocab: 30}")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        names = scope(names, info)
        dim = axis(integer(self.params.get("dim", 0), names, "pad dim"), len(info.shape), "pad")
        to = integer(self.params["to"], names, "pad to")
        if to < info.shape[dim]:
            raise ShapeError(f"pad to {to}: dim {dim} already has {info.shape[dim]} rows (use slice to cut rows)")
        return [Pad(dim, 0, to - info.shape[dim], number(self.params.get("value", 0), names, "pad value"))]

    def inverse(self) -> TensorOp | None:
        if "back" not in self.params:
            return None
        return SliceOp({"dim": self.params.get("dim", 0), "stop": self.params["back"],
                        "fill": self.params.get("value", 0), "back": self.params["to"]}, self.loc)

    def why_not_reversible(self) -> str:
        return "" if self.inverse() is not None else (
            "has a pad without 'back:', so reading the rules backwards does not know the size before it")


@register
class SliceOp(TensorOp):
    name = "slice"
    fields = (Field("dim", "int", required=False, help="the dim to cut (default 0)"),
              Field("start", "int", required=False, help="the first row kept (default 0)"),
              Field("stop", "int", help="the row after the last row kept"),
              Field("fill", "number", required=False, help="what the rows cut off held, if they are padding"))
    extras = (Field("back", "int", required=False, help="the dim's size before slicing, for reading rules "
                                                        "backwards"),)
    doc = Doc("keeps rows `start` to `stop` of a dim: a padded vocabulary trimmed to its real size",
              "`slice: {dim, start, stop, fill}`, with `back: SIZE` for reading rules backwards",
              "`pad` with `fill`; equivalent when the rows cut off are padding (give `fill`), else not "
              "reversible",
              """\
- from: embed.weight
  to: embed_tokens.weight
  ops: [{slice: {stop: vocab, fill: 0}, back: "(vocab + 7) // 8 * 8"}]
  examples:
    - {key: embed.weight, shape: [32, 4], to: embed_tokens.weight, shapes: [[30, 4]]}
""", "{vocab: 30}")

    def check(self) -> None:
        fill = self.params.get("fill")
        if fill is not None and not isinstance(fill, (int, float)):
            raise RuleError("slice fill must be a number, not an expression", self.loc)

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        names = scope(names, info)
        dim = axis(integer(self.params.get("dim", 0), names, "slice dim"), len(info.shape), "slice")
        start = integer(self.params.get("start", 0), names, "slice start")
        stop = integer(self.params["stop"], names, "slice stop")
        return [Trim(dim, start, stop, self.params.get("fill"))]

    @property
    def reversibility(self) -> Reversibility:
        return "none" if self.params.get("fill") is None else "equivalent"

    @property
    def reversibility_note(self) -> str:
        return "padded back with the declared fill: an equivalent model when the rows cut were padding"

    def inverse(self) -> TensorOp | None:
        if "back" not in self.params or self.params.get("fill") is None or self.params.get("start", 0) != 0:
            return None
        return PadOp({"dim": self.params.get("dim", 0), "to": self.params["back"], "value": self.params["fill"],
                      "back": self.params["stop"]}, self.loc)

    def why_not_reversible(self) -> str:
        if self.params.get("fill") is None:
            return "has a slice without 'fill:', so the rows it cuts cannot be restored"
        if self.inverse() is None:
            return "has a slice without 'back:' (or with a start), so reading the rules backwards cannot undo it"
        return ""
