"""Recipes: how one output tensor is made from source tensors, as plain data with integer parameters.

The planner resolves a rule's ops (whose parameters may be expressions) into a
`Recipe` for every output tensor; the IO layer executes it. A recipe is:

- ``inputs``: the source keys, in the order the combine step takes them;
- ``prep``: steps applied to each input on its own, before combining (often none);
- ``combine``: how the inputs become one tensor (`COMBINES`);
- ``steps``: then, in order, view or numeric steps on that tensor (`STEPS`).

This module knows the shape each step produces (`output_shape`), so plans are
checked against the target model before a byte is read. It imports nothing
else from remap but `tensors`, and never imports numpy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .tensors import TensorInfo

# combine kind -> whether it is byte-exact
COMBINES: Final = {"single": True, "concat": True, "stack": True, "dedup": True, "fold_weight_norm": False}
# step kind -> whether it is byte-exact (a view or a copy of bytes) or numeric
STEPS: Final = {"slice": True, "select": True, "permute": True, "reshape": True, "squeeze": True,
                "unsqueeze": True, "norm_except": False, "cast": False}


class ShapeError(ValueError):
    """An op does not fit the tensor's shape (splitting 1000 rows in 3, squeezing a dim of size 4)."""


@dataclass(frozen=True)
class Step:
    """One step: ``kind`` and its parameters (ints; ``cast`` takes a dtype name)."""

    kind: str
    args: tuple[int | str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Recipe:
    """How one output tensor is made: combine ``inputs``, then apply ``steps`` in order."""

    inputs: tuple[str, ...]
    combine: Step
    steps: tuple[Step, ...] = ()
    prep: tuple[tuple[Step, ...], ...] = ()  # per input; empty: no input has steps of its own

    @property
    def exact(self) -> bool:
        """True when the output's bytes are source bytes rearranged (no arithmetic, no cast)."""
        steps = [*self.steps, *(s for own in self.prep for s in own)]
        return COMBINES[self.combine.kind] and all(STEPS[s.kind] for s in steps)

    def input_steps(self, index: int) -> tuple[Step, ...]:
        return self.prep[index] if self.prep else ()

    def describe(self) -> str:
        own = [f"{k}: {' -> '.join(map(str, steps))}" for k, steps in zip(self.inputs, self.prep, strict=False)
               if steps]
        parts = [f"[{'; '.join(own)}]"] if own else []
        parts += [] if self.combine.kind == "single" else [str(self.combine)]
        return " -> ".join(parts + [str(s) for s in self.steps]) or "copy"


def _int(arg: int | str) -> int:
    assert isinstance(arg, int), arg
    return arg


def _dim(dim: int, ndim: int, what: str) -> int:
    """A dimension index (negative counts from the end), checked against ``ndim``."""
    if not -ndim <= dim < ndim:
        raise ShapeError(f"{what}: dim {dim} is out of range for a {ndim}-d tensor")
    return dim % ndim


def combine_shape(step: Step, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of combining tensors of ``shapes``."""
    kind = step.kind
    if kind in ("single", "dedup"):
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"{kind}: the inputs have different shapes {[list(s) for s in shapes]}")
        return shapes[0]
    if kind == "fold_weight_norm":
        g, v = shapes
        dim = _dim(_int(step.args[0]), len(v), kind)
        if len(g) != len(v) or any(n != (v[i] if i == dim else 1) for i, n in enumerate(g)):
            raise ShapeError(f"{kind}: g {list(g)} is not v {list(v)} reduced over every dim but {dim}")
        return v
    if kind == "stack":
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"stack: the inputs have different shapes {[list(s) for s in shapes]}")
        dim = _dim(_int(step.args[0]), len(shapes[0]) + 1, kind)
        return (*shapes[0][:dim], len(shapes), *shapes[0][dim:])
    if kind == "concat":
        dim = _dim(_int(step.args[0]), len(shapes[0]), kind)
        rest = [s[:dim] + s[dim + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) or r != rest[0] for s, r in zip(shapes, rest, strict=True)):
            raise ShapeError(f"concat: shapes {[list(s) for s in shapes]} differ outside dim {dim}")
        return (*shapes[0][:dim], sum(s[dim] for s in shapes), *shapes[0][dim + 1:])
    raise ShapeError(f"unknown combine '{kind}'")


def step_shape(step: Step, shape: tuple[int, ...]) -> tuple[int, ...]:  # noqa: PLR0911, PLR0912 - one branch per kind
    """The shape after ``step``."""
    kind, args = step.kind, step.args
    if kind == "slice":
        dim = _dim(_int(args[0]), len(shape), kind)
        start, stop = _int(args[1]), _int(args[2])
        if not 0 <= start <= stop <= shape[dim]:
            raise ShapeError(f"slice [{start}:{stop}] is outside dim {dim} of size {shape[dim]}")
        return (*shape[:dim], stop - start, *shape[dim + 1:])
    if kind == "select":
        dim = _dim(_int(args[0]), len(shape), kind)
        if not 0 <= _int(args[1]) < shape[dim]:
            raise ShapeError(f"index {args[1]} is outside dim {dim} of size {shape[dim]}")
        return shape[:dim] + shape[dim + 1:]
    if kind == "permute":
        dims = [_int(a) for a in args]
        if sorted(dims) != list(range(len(shape))):
            raise ShapeError(f"permute {dims} is not a permutation of the {len(shape)} dims of {list(shape)}")
        return tuple(shape[d] for d in dims)
    if kind == "reshape":
        new = tuple(_int(a) for a in args)
        if any(n < 0 for n in new) or math.prod(new) != math.prod(shape):
            raise ShapeError(f"cannot reshape {list(shape)} ({math.prod(shape)} elements) to {list(new)}")
        return new
    if kind == "squeeze":
        dim = _dim(_int(args[0]), len(shape), kind)
        if shape[dim] != 1:
            raise ShapeError(f"cannot squeeze dim {dim} of {list(shape)}: its size is not 1")
        return shape[:dim] + shape[dim + 1:]
    if kind == "unsqueeze":
        dim = _dim(_int(args[0]), len(shape) + 1, kind)
        return (*shape[:dim], 1, *shape[dim:])
    if kind == "norm_except":
        dim = _dim(_int(args[0]), len(shape), kind)
        return tuple(n if i == dim else 1 for i, n in enumerate(shape))
    if kind == "cast":
        return shape
    raise ShapeError(f"unknown step '{kind}'")


def output_info(recipe: Recipe, inputs: Sequence[TensorInfo]) -> TensorInfo:
    """The output's shape and dtype, or ShapeError naming what does not fit."""
    prepared = [_apply(recipe.input_steps(i), info) for i, info in enumerate(inputs)]
    dtypes = {info.dtype for info in prepared}
    if len(dtypes) > 1:
        raise ShapeError(f"{recipe.combine.kind}: the inputs have different dtypes {sorted(dtypes)}")
    shape = combine_shape(recipe.combine, [tuple(info.shape) for info in prepared])
    return _apply(recipe.steps, TensorInfo(shape, prepared[0].dtype))


def _apply(steps: Sequence[Step], info: TensorInfo) -> TensorInfo:
    shape, dtype = tuple(info.shape), info.dtype
    for step in steps:
        shape = step_shape(step, shape)
        if step.kind == "cast":
            dtype = str(step.args[0])
    return TensorInfo(shape, dtype)
