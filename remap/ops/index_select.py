"""``index_select: {dim, index}``: rows of a dim in the order a list gives, as torch.index_select.

The list is an expression (or a literal list) over the config: a CTC head whose rows follow a
fairseq dictionary, reordered for a tokenizer that numbers the same symbols differently. A copy of
bytes, so byte-exact. Undone by the inverse permutation when the list is a permutation of every row;
a list that repeats or leaves out rows is not reversible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError
from ..tensors import TensorInfo
from .base import Doc, Field, Raw, Reversibility, ShapeError, Step, TensorOp, axis, evaluate, integer, register, scope

SHOWN = 8  # indices shown in plans and provenance before the list is summarised


@dataclass(frozen=True)
class IndexSelect(Step):
    kind = "index_select"
    dim: int
    index: tuple[int, ...]

    @property
    def args(self) -> tuple[Any, ...]:
        if len(self.index) <= SHOWN:
            return self.dim, list(self.index)
        return self.dim, f"[{', '.join(map(str, self.index[:3]))}, ... {self.index[-1]}] ({len(self.index)} rows)"

    @property
    def permutation(self) -> bool:
        return sorted(self.index) == list(range(len(self.index)))

    @property
    def reversibility(self) -> Reversibility:
        return "exact" if self.permutation else "none"

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        bad = next((i for i in self.index if not 0 <= i < shape[dim]), None)
        if bad is not None:
            raise ShapeError(f"index_select: index {bad} is outside dim {dim} of size {shape[dim]}")
        return (*shape[:dim], len(self.index), *shape[dim + 1:])

    def run(self, raw: Raw) -> Raw:
        import numpy as np

        return Raw(np.take(raw.array, np.asarray(self.index, dtype=np.int64), axis=self.dim), raw.dtype)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        if not self.permutation or len(self.index) != before.shape[self.dim % len(before.shape)]:
            raise ShapeError(f"{self} repeats or leaves out rows, so a reverse conversion cannot undo it")
        back = [0] * len(self.index)
        for position, row in enumerate(self.index):
            back[row] = position
        return (IndexSelect(self.dim, tuple(back)),)


@register
class IndexSelectOp(TensorOp):
    name = "index_select"
    fields = (Field("dim", "int", required=False, help="the dim whose rows are chosen (default 0)"),
              Field("index", "value", help="a list of row numbers, or an expression giving one"))
    doc = Doc("takes the rows of a dim in the order a list gives (torch.index_select)",
              "`index_select: {dim, index}`",
              "the inverse permutation; exact when the list is a permutation of every row, else not reversible",
              """\
- from: ctc_proj.weight
  to: lm_head.weight
  ops: [{index_select: {index: "[shape[0] - 1 - i for i in range(shape[0])]"}}]
  examples:
    - {key: ctc_proj.weight, shape: [3, 4], to: lm_head.weight, shapes: [[3, 4]]}
""")

    inverted: bool = False  # reading rules backwards: the inverse permutation of ``index``

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        names = scope(names, info)
        dim = axis(integer(self.params.get("dim", 0), names, "index_select dim"), len(info.shape), "index_select")
        index = self._index(names)
        step = IndexSelect(dim, index)
        return list(step.undo(info)) if self.inverted else [step]

    def _index(self, names: Mapping[str, Any]) -> tuple[int, ...]:
        raw = self.params["index"]
        value = [evaluate(p, names) for p in raw] if isinstance(raw, tuple) else evaluate(raw, names)
        if not isinstance(value, (list, tuple)) or not all(type(i) is int for i in value):
            raise RuleError(f"index_select index must be a list of integers, got {str(value)[:80]}", self.loc)
        return tuple(value)

    def inverse(self) -> TensorOp:
        op = IndexSelectOp(self.params, self.loc)
        op.inverted = not self.inverted
        return op
