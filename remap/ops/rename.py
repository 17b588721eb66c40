"""A rule without a structure: one source to one target, or to several targets at once (a tie).

``to: [A, B]`` writes the same tensor to both targets (Whisper's output projection is its token
embedding). Read backwards, a tie's copies must agree: they are kept once (`Dedup`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..tensors import TensorInfo
from .base import Backwards, Combine, Doc, Single, Step, Structure, register, undo_all
from .dedup import Dedup


@register
@dataclass(frozen=True)
class Rename(Structure):
    name = "rename"
    arity = "a rename takes one source pattern (several need concat, stack or fold_weight_norm)"
    doc = Doc("one source to one target; with `to: [A, B]`, the same tensor to both (a tie)",
              '`to: TARGET` or `to: [TARGET, TARGET]`',
              "a rename back; a tie's copies must agree and are kept once; exact",
              """\
- from: decoder.token_embedding.weight
  to: [decoder.embed_tokens.weight, proj_out.weight]
  examples:
    - decoder.token_embedding.weight: [decoder.embed_tokens.weight, proj_out.weight]
""")

    def fits(self, n_sources: int, n_targets: int) -> bool:
        return n_sources == 1

    def backwards(self, outputs: Sequence[tuple[str, tuple[Step, ...]]], combined: TensorInfo) -> Backwards:
        undo = tuple(undo_all(steps, combined) for _, steps in outputs)
        combine: Combine = Dedup() if len(outputs) > 1 else Single()
        return tuple(target for target, _ in outputs), combine, undo
