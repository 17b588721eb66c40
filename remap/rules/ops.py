"""Tensor ops as data: what a rule file's ``ops:`` and structural fields compile to, and their inverses.

Two kinds, both frozen:

- `ShapeOp`, one entry of ``ops:``: ``transpose``, ``permute``, ``reshape``, ``squeeze``,
  ``unsqueeze``, ``rope_permute``, ``rope_unpermute``. Parameters may be expressions over the
  config, the captures and ``shape`` (the shape going into the op); `ShapeOp.steps` resolves
  them into concrete `Step`s (remap.recipes) for one tensor.
- `Structure`, a rule's many-to-one or one-to-many shape: ``map`` (one source to one target, or
  to several identical ``tie`` targets), ``split``, ``unstack``, ``concat``, ``stack``,
  ``dedup``, ``fold_weight_norm`` and ``unfold_weight_norm``.

Each op declares its inverse next to it (`ShapeOp.inverse`, `Structure.inverse_kind`), and
whether it is byte-exact. Nothing here touches tensor data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import Loc, RuleError
from ..recipes import ShapeError, Step
from .expr import Expr

SHAPE_OPS: Final = ("transpose", "permute", "reshape", "squeeze", "unsqueeze", "rope_permute", "rope_unpermute")
STRUCTURES: Final = ("split", "unstack", "concat", "stack", "dedup", "fold_weight_norm", "unfold_weight_norm")
# structure -> the structure that undoes it
INVERSE: Final = {"map": "map", "split": "concat", "concat": "split", "stack": "unstack", "unstack": "stack",
                  "dedup": "tie", "fold_weight_norm": "unfold_weight_norm", "unfold_weight_norm": "fold_weight_norm"}
NUMERIC: Final = frozenset({"fold_weight_norm", "unfold_weight_norm"})

Param = int | Expr


def value(param: Param, names: Mapping[str, Any], what: str) -> int:
    """An op parameter's value: an int, or an expression that must give an int."""
    result = param if isinstance(param, int) else param.evaluate(names)
    if isinstance(result, bool) or not isinstance(result, int):
        where = param.loc if isinstance(param, Expr) else None
        raise RuleError(f"{what} must be an integer, got {result!r}", where)
    return result


@dataclass(frozen=True)
class ShapeOp:
    """One shape op on one tensor, in a rule's (or a target's) ``ops:`` list."""

    kind: str
    args: tuple[Param, ...]
    loc: Loc
    back: tuple[Param, ...] | None = None  # reshape only: the shape that undoes it (for reverse conversion)

    def __str__(self) -> str:
        shown = ", ".join(a.text if isinstance(a, Expr) else str(a) for a in self.args)
        return f"{self.kind}({shown})"

    def steps(self, names: Mapping[str, Any], shape: tuple[int, ...]) -> list[Step]:
        """Concrete steps for a tensor of ``shape``; ``names`` are the config and the captures."""
        scope = {**names, "shape": shape}
        ints = [value(a, scope, f"{self.kind} parameter") for a in self.args]
        if self.kind == "transpose":
            return [Step("permute", _swap(ints[0], ints[1], len(shape)))]
        if self.kind == "permute":
            return [Step("permute", tuple(ints))]
        if self.kind == "reshape":
            return [Step("reshape", _fill_minus_one(ints, shape))]
        if self.kind in ("squeeze", "unsqueeze"):
            return [Step(self.kind, (ints[0],))]
        return _rope(self.kind == "rope_permute", ints[0], shape)

    def inverse(self) -> ShapeOp:
        """The op that undoes this one (RuleError for a reshape that does not say its way back)."""
        if self.kind == "permute":
            dims = [a for a in self.args if isinstance(a, int)]
            if len(dims) != len(self.args):
                raise RuleError("a permute with expressions cannot be inverted; give plain dims", self.loc)
            return ShapeOp("permute", tuple(dims.index(i) for i in range(len(dims))), self.loc)
        if self.kind == "reshape":
            if self.back is None:
                raise RuleError("reshape has no 'back' shape, so a reverse conversion cannot undo it", self.loc)
            return ShapeOp("reshape", self.back, self.loc, self.args)
        flipped = {"squeeze": "unsqueeze", "unsqueeze": "squeeze", "rope_permute": "rope_unpermute",
                   "rope_unpermute": "rope_permute", "transpose": "transpose"}
        return ShapeOp(flipped[self.kind], self.args, self.loc)

    @property
    def invertible(self) -> bool:
        return self.kind != "reshape" or self.back is not None


def _swap(a: int, b: int, ndim: int) -> tuple[int, ...]:
    dims = list(range(ndim))
    for d in (a, b):
        if not -ndim <= d < ndim:
            raise ShapeError(f"transpose: dim {d} is out of range for a {ndim}-d tensor")
    a, b = a % ndim, b % ndim
    dims[a], dims[b] = dims[b], dims[a]
    return tuple(dims)


def _fill_minus_one(ints: list[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve one ``-1`` entry from the element count, as torch.reshape does."""
    if ints.count(-1) > 1:
        raise ShapeError(f"reshape {ints}: at most one -1")
    if -1 not in ints:
        return tuple(ints)
    known = 1
    for n in ints:
        known *= n if n != -1 else 1
    total = 1
    for n in shape:
        total *= n
    if known == 0 or total % known:
        raise ShapeError(f"cannot reshape {list(shape)} to {ints}")
    return tuple(total // known if n == -1 else n for n in ints)


def _rope(forward: bool, heads: int, shape: tuple[int, ...]) -> list[Step]:
    """Rows of a q/k projection from interleaved pairs to two halves per head (or back).

    Interleaved (moshi, llama's original release) keeps each rotary pair in adjacent rows;
    transformers' ``rotate_half`` wants the pair's members in the two halves of each head.
    Forward: ``view(heads, rows // heads // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)``.
    """
    if not shape:
        raise ShapeError("rope permutation needs a tensor with at least one dim")
    rows, rest = shape[0], shape[1:]
    if heads <= 0 or rows % (2 * heads):
        raise ShapeError(f"rope permutation: {rows} rows do not split into {heads} heads of pairs")
    half = rows // heads // 2
    inner = (heads, half, 2, *rest) if forward else (heads, 2, half, *rest)
    order = (0, 2, 1, *range(3, 3 + len(rest)))
    return [Step("reshape", inner), Step("permute", order), Step("reshape", (rows, *rest))]


@dataclass(frozen=True)
class Structure:
    """How a rule's source tensors become its targets."""

    kind: str = "map"  # map (one target, or several identical ones: a tie), or one of STRUCTURES
    dim: int = 0
    sizes: tuple[Param, ...] | None = None  # split: the size of each part (default: equal parts)
    over: str | None = None  # concat/stack/dedup over every value of this int capture
    index: str | None = None  # unstack: the name of the new index in the targets
    count: Expr | None = None  # dedup: how many copies there are (what a reverse conversion writes)

    @property
    def exact(self) -> bool:
        return self.kind not in NUMERIC

    @property
    def inverse_kind(self) -> str:
        return INVERSE[self.kind]
