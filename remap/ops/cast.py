"""``cast: DTYPE`` (a rule field): the tensor converted to another dtype, as torch's Tensor.to rounds.

Numeric, not byte-exact: a reverse conversion casts back, which gives an equivalent tensor only when
the cast lost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tensors import TensorInfo
from .base import Raw, Step
from .numbers import from_torch, to_torch


@dataclass(frozen=True)
class Cast(Step):
    kind = "cast"
    exact = False
    to: str

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def dtype(self, dtype: str) -> str:
        return self.to

    def run(self, raw: Raw) -> Raw:
        import torch

        return from_torch(to_torch(raw).to(getattr(torch, self.to)))

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        return (Cast(before.dtype),)
