"""A recipe: how one output tensor is made from source tensors, as plain data with every parameter known.

The planner turns a rule's ops into a `Recipe` for every output tensor; `remap.io.execute` runs it;
a reverse conversion reads recipes backwards. A recipe is:

- ``inputs``: the source keys, in the order the combine step takes them;
- ``prep``: steps applied to each input on its own, before combining (often none);
- ``combine``: how the inputs become one tensor (a `Combine`);
- ``steps``: then, in order, steps on that tensor. For a structure with several outputs (a split),
  the first step takes this output's part (a slice).

The shape each step makes is known (`output_info`), so a plan is checked against the target model
before a byte is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..tensors import TensorInfo
from .base import Combine, Reversibility, ShapeError, Single, Step, info_after, reversibility_of


@dataclass(frozen=True)
class Recipe:
    """How one output tensor is made: combine ``inputs``, then apply ``steps`` in order."""

    inputs: tuple[str, ...]
    combine: Combine = field(default_factory=Single)
    steps: tuple[Step, ...] = ()
    prep: tuple[tuple[Step, ...], ...] = ()  # per input; empty: no input has steps of its own

    @property
    def all_steps(self) -> list[Step]:
        return [*self.steps, *(s for own in self.prep for s in own)]

    @property
    def exact(self) -> bool:
        """True when the output's bytes are source bytes rearranged (no arithmetic, no cast)."""
        return self.combine.exact and all(s.exact for s in self.all_steps)

    @property
    def reversibility(self) -> Reversibility:
        """How well undoing this recipe restores its inputs: the weakest of its combine and steps."""
        steps = reversibility_of(self.all_steps)
        if self.combine.reversibility == "exact" or steps == "none":
            return steps
        return self.combine.reversibility

    def input_steps(self, index: int) -> tuple[Step, ...]:
        return self.prep[index] if self.prep else ()

    def describe(self) -> str:
        own = [f"{k}: {' -> '.join(map(str, steps))}" for k, steps in zip(self.inputs, self.prep, strict=False)
               if steps]
        parts = [f"[{'; '.join(own)}]"] if own else []
        parts += [] if isinstance(self.combine, Single) else [str(self.combine)]
        return " -> ".join(parts + [str(s) for s in self.steps]) or "copy"


def output_info(recipe: Recipe, inputs: Sequence[TensorInfo]) -> TensorInfo:
    """The output's shape and dtype, or ShapeError naming what does not fit."""
    prepared = [info_after(recipe.input_steps(i), info) for i, info in enumerate(inputs)]
    dtypes = {info.dtype for info in prepared}
    if len(dtypes) > 1:
        raise ShapeError(f"{recipe.combine.kind}: the inputs have different dtypes {sorted(dtypes)}")
    shape = recipe.combine.shape([tuple(info.shape) for info in prepared])
    return info_after(recipe.steps, TensorInfo(shape, recipe.combine.dtype(prepared[0].dtype)))
