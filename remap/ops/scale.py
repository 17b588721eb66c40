"""``scale: FACTOR``: every element multiplied by a constant, as torch multiplies (in the tensor's dtype).

For checkpoints that fold a constant into a weight (a query projection stored pre-multiplied by the
attention scale) where the target applies it at run time, or the other way round. It computes, so it
is not byte-exact; undone by scaling by 1 / FACTOR. That is exact when FACTOR is a power of two (only
the exponent changes, as long as no value overflows or falls below the dtype's normal range), and
equivalent (the same model up to rounding) otherwise. Floating-point tensors only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError
from ..tensors import TensorInfo
from .base import Doc, Field, Raw, Reversibility, ShapeError, Step, TensorOp, number, register, scope
from .numbers import from_torch, to_torch


def power_of_two(factor: float) -> bool:
    mantissa, _ = math.frexp(abs(factor))
    return factor != 0 and math.isfinite(factor) and mantissa == 0.5


@dataclass(frozen=True)
class Scale(Step):
    kind = "scale"
    exact = False
    factor: float

    @property
    def reversibility(self) -> Reversibility:
        return "exact" if power_of_two(self.factor) else "equivalent"

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def dtype(self, dtype: str) -> str:
        if dtype not in ("float64", "float32", "float16", "bfloat16"):
            raise ShapeError(f"scale needs a float64, float32, float16 or bfloat16 tensor, not {dtype}")
        return dtype

    def run(self, raw: Raw) -> Raw:
        return from_torch(to_torch(raw) * self.factor)

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        return (Scale(1 / self.factor),)


@register
class ScaleOp(TensorOp):
    name = "scale"
    main = Field("scale", "number", help="the constant factor")
    doc = Doc("multiplies every element by a constant (a query projection stored with the attention scale "
              "folded in)", "`scale: FACTOR`",
              "a scale by 1 / FACTOR; exact when FACTOR is a power of two, else equivalent (rounding)",
              """\
- from: attn.q.weight
  to: attn.q_proj.weight
  ops: [{scale: "head_dim ** 0.5"}]
  examples:
    - {key: attn.q.weight, shape: [8, 8], to: attn.q_proj.weight, shapes: [[8, 8]]}
""", "{head_dim: 64}")

    inverted: bool = False  # reading rules backwards: scale by 1 / FACTOR

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        factor = number(self.params["scale"], scope(names, info), "scale factor")
        if factor == 0:
            raise RuleError("scale factor must not be 0 (that loses every value)", self.loc)
        return [Scale(1 / factor if self.inverted else factor)]

    @property
    def reversibility(self) -> Reversibility:
        factor = self.params["scale"]
        if isinstance(factor, (int, float)):
            return "exact" if power_of_two(factor) else "equivalent"
        return "equivalent"

    @property
    def reversibility_note(self) -> str:
        return "which computes: undone exactly only for a power-of-two factor, else up to rounding"

    def inverse(self) -> TensorOp:
        op = ScaleOp(self.params, self.loc)
        op.inverted = not self.inverted
        return op
