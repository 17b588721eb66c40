"""``dedup: {over: NAME, count: EXPR}``: several byte-identical copies kept once.

Checkpoints that store one table per layer (rotary inverse frequencies) become one target. The plan
reads the copies and names the first one that differs. Read backwards, the one target is written
``count`` times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..tensors import TensorInfo
from .base import Combine, Doc, Raw, ShapeError, Step, Structure, integer, register, same_shapes


@dataclass(frozen=True)
class Dedup(Combine):
    """Identical inputs kept once."""

    kind: ClassVar[str] = "dedup"
    identical: ClassVar[bool] = True
    first_only: ClassVar[bool] = True

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        return same_shapes(self.kind, shapes)

    def run(self, inputs: Sequence[Raw]) -> Raw:
        return inputs[0]

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        return ()


@register
@dataclass(frozen=True)
class DedupStructure(Structure):
    name = "dedup"
    fields = ("over", "count")
    shorthand = "over"
    arity = "dedup takes one source with 'over', and one target"
    doc = Doc("keeps one of several copies that must be byte-identical; `count` says how many there are",
              '`dedup: NAME` or `dedup: {over, count}`',
              'the target written `count` times; exact (needs `count` without `--like`)',
              """\
- from: encoder.layers.{l:int}.self_attn.rotary.inv_freq
  dedup: {over: l, count: encoder_layers}
  to: encoder.rotary_emb.inv_freq
  examples:
    - encoder.layers.1.self_attn.rotary.inv_freq: encoder.rotary_emb.inv_freq
""", "{encoder_layers: 2}")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 1 and n_targets == 1 and self.over is not None

    def combine(self) -> Combine:
        return Dedup()

    def check_group(self, keys: Sequence[str], names: Mapping[str, Any]) -> None:
        if self.count is not None:
            count = integer(self.count, names, "dedup count")
            if count != len(keys):
                raise ShapeError(f"dedup expects {count} copies (count: {self.count.text}), found {len(keys)}")

    def over_sources(self, combined: TensorInfo, names: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        if self.count is None:
            raise ShapeError("it deduplicates without 'count', so the number of copies is unknown without --like")
        return integer(self.count, names, "dedup count"), tuple(combined.shape)

    def blockers(self) -> list[tuple[str, bool]]:
        if self.count is None:
            return [("deduplicates without 'count', so a reverse conversion does not know how many copies to "
                     "write", False)]
        return []
