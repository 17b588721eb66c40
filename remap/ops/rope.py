"""``rope_permute: HEADS`` and ``rope_unpermute: HEADS``: rotary q/k rows, interleaved pairs <-> halves.

Interleaved checkpoints (moshi, llama's original release) keep each rotary pair in adjacent rows;
transformers' ``rotate_half`` wants the pair's members in the two halves of each head. Forward:
``view(heads, rows // heads // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)``, three byte-exact
steps; each op undoes the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tensors import TensorInfo
from .base import Doc, Field, ShapeError, Step, TensorOp, integer, register, scope
from .permute import Permute
from .reshape import Reshape


def rope_steps(forward: bool, heads: int, shape: tuple[int, ...]) -> list[Step]:
    if not shape:
        raise ShapeError("rope permutation needs a tensor with at least one dim")
    rows, rest = shape[0], shape[1:]
    if heads <= 0 or rows % (2 * heads):
        raise ShapeError(f"rope permutation: {rows} rows do not split into {heads} heads of pairs")
    half = rows // heads // 2
    inner = (heads, half, 2, *rest) if forward else (heads, 2, half, *rest)
    order = (0, 2, 1, *range(3, 3 + len(rest)))
    return [Reshape(inner), Permute(order), Reshape((rows, *rest))]


@register
class RopePermute(TensorOp):
    name = "rope_permute"
    main = Field("rope_permute", "int", help="the number of heads")
    doc = Doc("rotary q/k rows from interleaved pairs to two halves per head (what `rotate_half` expects)",
              '`rope_permute: HEADS`', '`rope_unpermute`; exact',
              """\
- from: attn.q.weight
  to: attn.q_proj.weight
  ops: [{rope_permute: heads}]
  examples:
    - {key: attn.q.weight, shape: [8, 8], to: attn.q_proj.weight, shapes: [[8, 8]]}
""", "{heads: 2}")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        heads = integer(self.params[self.name], scope(names, info), f"{self.name} parameter")
        return rope_steps(True, heads, tuple(info.shape))

    def inverse(self) -> TensorOp:
        return RopeUnpermute({"rope_unpermute": self.params[self.name]}, self.loc)


@register
class RopeUnpermute(TensorOp):
    name = "rope_unpermute"
    main = Field("rope_unpermute", "int", help="the number of heads")
    doc = Doc("rotary q/k rows from two halves per head back to interleaved pairs",
              '`rope_unpermute: HEADS`', '`rope_permute`; exact',
              """\
- from: attn.q_proj.weight
  to: attn.q.weight
  ops: [{rope_unpermute: heads}]
  examples:
    - {key: attn.q_proj.weight, shape: [8, 8], to: attn.q.weight, shapes: [[8, 8]]}
""", "{heads: 2}")

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        heads = integer(self.params[self.name], scope(names, info), f"{self.name} parameter")
        return rope_steps(False, heads, tuple(info.shape))

    def inverse(self) -> TensorOp:
        return RopePermute({"rope_permute": self.params[self.name]}, self.loc)
