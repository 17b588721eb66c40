"""``fold_weight_norm: DIM`` and ``unfold_weight_norm: DIM``: a weight norm's ``g`` and ``v``, and one weight.

Fold takes two sources ``[g, v]`` and writes ``weight = g * v / |v|``, the norm taken over every dim
but DIM, computed by torch's own ``_weight_norm``. Unfold is its inverse: one source, two targets
``[g, v]`` with ``g = |w|`` and ``v = w``. Both compute, so neither is byte-exact: read backwards, each
gives an equivalent weight norm, not the same bytes.
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
    Output,
    Raw,
    ShapeError,
    Step,
    Structure,
    axis,
    is_float,
    register,
    undo_all,
)
from .numbers import from_torch, to_torch


@dataclass(frozen=True)
class NormExcept(Step):
    """The 2-norm over every dim but ``dim`` (a weight norm's ``g``)."""

    kind = "norm_except"
    exact = False
    dim: int

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dim = axis(self.dim, len(shape), self.kind)
        return tuple(n if i == dim else 1 for i, n in enumerate(shape))

    def run(self, raw: Raw) -> Raw:
        import torch

        return from_torch(torch.norm_except_dim(to_torch(raw), 2, self.dim))


@dataclass(frozen=True)
class FoldWeightNorm(Combine):
    kind: ClassVar[str] = "fold_weight_norm"
    exact: ClassVar[bool] = False
    dim: int = 0

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        g, v = shapes
        dim = axis(self.dim, len(v), self.kind)
        if len(g) != len(v) or any(n != (v[i] if i == dim else 1) for i, n in enumerate(g)):
            raise ShapeError(f"{self.kind}: g {list(g)} is not v {list(v)} reduced over every dim but {dim}")
        return v

    def dtype(self, dtype: str) -> str:
        if not is_float(dtype):
            raise ShapeError(f"fold_weight_norm needs floating-point tensors, not {dtype}")
        return dtype

    def run(self, inputs: Sequence[Raw]) -> Raw:
        import torch

        g, v = (to_torch(r) for r in inputs)
        return from_torch(torch._weight_norm(v, g, self.dim))

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        return (NormExcept(self.dim % len(inputs[1].shape)),) if index == 0 else ()


@register
@dataclass(frozen=True)
class Fold(Structure):
    name = "fold_weight_norm"
    fields = ("dim",)
    exact = False
    arity = "fold_weight_norm takes two sources [g, v] and one target"
    doc = Doc("two sources `[g, v]` to one weight, `g * v / |v|` (torch's `_weight_norm`)",
              '`fold_weight_norm: DIM`', '`unfold_weight_norm`; equivalent (the same weight, not the same g and v)',
              """\
- from: ["convs.{i:int}.weight_g", "convs.{i:int}.weight_v"]
  fold_weight_norm: 0
  to: convs.{i}.weight
  examples:
    - key: [convs.0.weight_g, convs.0.weight_v]
      shape: [[16, 1, 1], [16, 8, 3]]
      to: convs.0.weight
      shapes: [[16, 8, 3]]
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 2 and n_targets == 1

    def combine(self) -> Combine:
        return FoldWeightNorm(self.dim)

    def source_shapes(self, combined: TensorInfo, n_sources: int, names: Mapping[str, Any]) -> list[tuple[int, ...]]:
        shape = tuple(combined.shape)
        d = self.dim % len(shape)
        return [tuple(s if i == d else 1 for i, s in enumerate(shape)), shape]

    def blockers(self) -> list[tuple[str, bool]]:
        return [(f"uses {self.name}, which is numeric (weight = g * v / |v|), not byte-invertible", True)]


@register
@dataclass(frozen=True)
class Unfold(Structure):
    name = "unfold_weight_norm"
    fields = ("dim",)
    exact = False
    arity = "unfold_weight_norm takes one source and two targets [g, v]"
    doc = Doc("one weight to two targets `[g, v]`, `g = |w|` and `v = w`",
              '`unfold_weight_norm: DIM`', '`fold_weight_norm`; equivalent (rounding)',
              """\
- from: plain.weight
  unfold_weight_norm: 0
  to: [parametrized.original0, parametrized.original1]
  examples:
    - key: plain.weight
      shape: [16, 8, 3]
      to: [parametrized.original0, parametrized.original1]
      shapes: [[16, 1, 1], [16, 8, 3]]
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 1 and n_targets == 2

    def outputs(self, n_targets: int, names: Mapping[str, Any], info: TensorInfo) -> list[Output]:
        return [Output(0, {}, (NormExcept(self.dim),)), Output(1, {}, ())]

    def backwards(self, outputs: Sequence[tuple[str, tuple[Step, ...]]], combined: TensorInfo) -> Backwards:
        (g_key, g_steps), (v_key, v_steps) = sorted(outputs, key=lambda o: not _is_g(o[1]))
        if not _is_g(g_steps) or _is_g(v_steps):
            raise ShapeError(f"outputs {[g_key, v_key]} are not a weight norm's g and v")
        head = g_steps[0]
        assert isinstance(head, NormExcept)
        undo_g = undo_all(g_steps[1:], head.info(combined))
        return (g_key, v_key), FoldWeightNorm(head.dim), (undo_g, undo_all(v_steps, combined))

    def combined_from(self, parts: Sequence[TensorInfo]) -> TensorInfo:
        return parts[1]

    def blockers(self) -> list[tuple[str, bool]]:
        return [(f"uses {self.name}, which is numeric (weight = g * v / |v|), not byte-invertible", True)]


def _is_g(steps: tuple[Step, ...]) -> bool:
    return bool(steps) and isinstance(steps[0], NormExcept)
