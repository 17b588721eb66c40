"""``concat: DIM`` or ``{dim, over}``: several sources joined along an existing dim.

Sources are a list of patterns (grouped by their shared captures) or one pattern ``over`` an int
capture (0..n-1 in order). Along dim 0 of contiguous inputs the output is the inputs' bytes one after
another, copied file to file. Byte-exact; read backwards, each source is a slice of the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..tensors import TensorInfo
from .base import Combine, Doc, Raw, ShapeError, Step, Structure, axis, register


@dataclass(frozen=True)
class Concat(Combine):
    kind: ClassVar[str] = "concat"
    dim: int = 0

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shapes[0]), self.kind)
        rest = [s[:dim] + s[dim + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) or r != rest[0] for s, r in zip(shapes, rest, strict=True)):
            raise ShapeError(f"concat: shapes {[list(s) for s in shapes]} differ outside dim {dim}")
        return (*shapes[0][:dim], sum(s[dim] for s in shapes), *shapes[0][dim + 1:])

    def run(self, inputs: Sequence[Raw]) -> Raw:
        import numpy as np

        return Raw(np.concatenate([r.array for r in inputs], axis=self.dim), inputs[0].dtype)

    def joins_bytes(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        return self.dim % max(len(shapes[0]), 1) == 0

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        from .split import Slice

        ndim = len(inputs[0].shape)
        dim = self.dim % ndim
        start = sum(info.shape[dim] for info in inputs[:index])
        return (Slice(dim, start, start + inputs[index].shape[dim]),)


@register
@dataclass(frozen=True)
class ConcatStructure(Structure):
    name = "concat"
    fields = ("dim", "over")
    arity = "concat takes either a list of sources or one source with 'over', and one target"
    doc = Doc("joins several sources along an existing dim (fused q/k/v made from three projections)",
              '`concat: DIM` or `concat: {dim, over}`', 'a slice of the target per source; exact',
              """\
- from: ["layers.{i:int}.q.{p:weight|bias}", "layers.{i:int}.k.{p:weight|bias}", "layers.{i:int}.v.{p:weight|bias}"]
  concat: 0
  to: layers.{i}.in_proj_{p}
  examples:
    - key: [layers.0.q.weight, layers.0.k.weight, layers.0.v.weight]
      shape: [[8, 8], [8, 8], [8, 8]]
      to: layers.0.in_proj_weight
      shapes: [[24, 8]]
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_targets == 1 and (n_sources > 1) != (self.over is not None)

    def combine(self) -> Combine:
        return Concat(self.dim)

    def source_shapes(self, combined: TensorInfo, n_sources: int, names: Any) -> list[tuple[int, ...]]:
        raise ShapeError("concatenates listed sources, whose sizes are unknown without --like")

    def over_sources(self, combined: TensorInfo, names: Any) -> tuple[int, tuple[int, ...]]:
        raise ShapeError(f"concatenates over '{self.over}', so the number of parts is unknown without --like")

    def blockers(self) -> list[tuple[str, bool]]:
        if self.over is not None:
            return [(f"concatenates over '{self.over}', so a reverse conversion does not know how many parts to "
                     "split into", False)]
        return []
