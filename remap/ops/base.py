"""What an op is: the base classes every op module fills in, and the values ops run on.

Three kinds of op, each a class in one module of this package:

- `TensorOp`: one entry of a rule's ``ops:`` list (``transpose``, ``pad``, ``scale``...). It holds
  its YAML schema (`TensorOp.fields`), its parameters (integers or expressions), its documented
  example, its reversibility, and `TensorOp.steps`: the concrete `Step` s it is for one tensor.
- `Structure`: how a rule's sources become its targets (a rename or tie, ``split``, ``concat``,
  ``fold_weight_norm``...). It checks its arity, makes each output's first steps, and knows how
  to take its outputs back to its inputs (`Structure.backwards`).
- `Step` and `Combine`: concrete ops with every parameter known, what a recipe runs. A step knows the
  shape and dtype it makes, how it runs on stored bytes (as a view, without reading, where it can) or
  on elements in memory, and the steps that undo it. A combine joins several inputs into one.

Nothing here reads a file: `remap.io.execute` hands steps a `Geometry` (a view of stored bytes) or a
`Raw` array, and steps return the same. numpy and torch are imported only inside the functions that
compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Protocol

from ..errors import Loc, RuleError
from ..tensors import TensorInfo

Reversibility = Literal["exact", "equivalent", "none"]
"""How well an op's inverse restores its input: the same bytes; the same model up to rounding; not at all."""


class ShapeError(ValueError):
    """An op does not fit the tensor's shape (splitting 1000 rows in 3, squeezing a dim of size 4)."""


class Expression(Protocol):
    """A compiled expression (remap.rules.expr.Expr): evaluated against config names and captures."""

    @property
    def text(self) -> str: ...

    @property
    def loc(self) -> Loc: ...

    def evaluate(self, names: Mapping[str, Any]) -> Any: ...


Param = int | float | Expression  # a literal, or an expression over the config, the captures and ``shape``


def text_of(param: Any) -> str:
    """How a parameter reads in messages and docs: a literal as itself, an expression as its text."""
    if isinstance(param, tuple):
        return "[" + ", ".join(text_of(p) for p in param) + "]"
    return str(param) if isinstance(param, (int, float)) else str(param.text)


def evaluate(param: Param, names: Mapping[str, Any]) -> Any:
    return param if isinstance(param, (int, float)) else param.evaluate(names)


def integer(param: Param, names: Mapping[str, Any], what: str) -> int:
    """A parameter's value, which must be an integer."""
    result = evaluate(param, names)
    if isinstance(result, bool) or not isinstance(result, int):
        raise RuleError(f"{what} must be an integer, got {result!r}", None if isinstance(param, (int, float))
                        else param.loc)
    return result


def number(param: Param, names: Mapping[str, Any], what: str) -> float | int:
    """A parameter's value, which must be a finite number."""
    result = evaluate(param, names)
    if isinstance(result, bool) or not isinstance(result, (int, float)) or not math.isfinite(result):
        raise RuleError(f"{what} must be a finite number, got {result!r}", None if isinstance(param, (int, float))
                        else param.loc)
    return result


def axis(dim: int, ndim: int, what: str) -> int:
    """A dimension index (negative counts from the end), checked against ``ndim``."""
    if not -ndim <= dim < ndim:
        raise ShapeError(f"{what}: dim {dim} is out of range for a {ndim}-d tensor")
    return dim % ndim


def is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


@dataclass(frozen=True)
class Geometry:
    """A view of stored elements: its shape, strides and offset, all counted in elements."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int

    @property
    def contiguous(self) -> bool:
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides), strict=True):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


@dataclass(frozen=True)
class Raw:
    """Elements in memory: ``array`` holds unsigned integers as wide as ``dtype`` (its bits, unconverted)."""

    array: Any
    dtype: str


# ---------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """A concrete op on one tensor. Subclasses are frozen dataclasses whose fields are its parameters."""

    kind: ClassVar[str]
    exact: ClassVar[bool] = True  # the output's bytes are input bytes rearranged (no arithmetic)

    @property
    def args(self) -> tuple[Any, ...]:
        """The parameters as shown in plans and provenance."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.args))})"

    @property
    def reversibility(self) -> Reversibility:
        """How well `undo` restores the input."""
        return "exact" if self.exact else "equivalent"

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape after this step (ShapeError when the input does not fit)."""
        raise NotImplementedError

    def dtype(self, dtype: str) -> str:
        """The dtype after this step (ShapeError when the step cannot take this dtype)."""
        return dtype

    def info(self, info: TensorInfo) -> TensorInfo:
        return TensorInfo(self.shape(tuple(info.shape)), self.dtype(info.dtype))

    def view(self, geometry: Geometry) -> Geometry | None:
        """This step as a view of the same stored elements, or None when it needs them in memory."""
        return None

    def run(self, raw: Raw) -> Raw:
        """This step on elements in memory."""
        raise NotImplementedError

    def undo(self, before: TensorInfo) -> tuple[Step, ...]:
        """Steps that take this step's output back to its input (of ``before``'s shape and dtype)."""
        raise ShapeError(f"{self} cannot be undone")


def info_after(steps: Sequence[Step], info: TensorInfo) -> TensorInfo:
    for step in steps:
        info = step.info(info)
    return info


def undo_all(steps: Sequence[Step], info: TensorInfo) -> tuple[Step, ...]:
    """Steps that take a tensor from after ``steps`` back to ``info`` (its shape and dtype before them)."""
    infos = [info]
    for step in steps:
        infos.append(step.info(infos[-1]))
    undo: list[Step] = []
    for i in reversed(range(len(steps))):
        undo += steps[i].undo(infos[i])
    return tuple(undo)


def reversibility_of(steps: Sequence[Step]) -> Reversibility:
    """The weakest reversibility of ``steps``."""
    found = {step.reversibility for step in steps}
    return "none" if "none" in found else "equivalent" if "equivalent" in found else "exact"


# -------------------------------------------------------------------------------------------- combines


@dataclass(frozen=True)
class Combine:
    """How a recipe's inputs become one tensor. `Single` takes its one input as it is."""

    kind: ClassVar[str]
    exact: ClassVar[bool] = True
    identical: ClassVar[bool] = False  # the inputs must be byte-identical copies (checked while planning)
    first_only: ClassVar[bool] = False  # the output is the first input as it is (no need to read it)

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.args))})"

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, dtype: str) -> str:
        """The combined tensor's dtype, from the inputs' one dtype (ShapeError when the combine cannot take it)."""
        return dtype

    def run(self, inputs: Sequence[Raw]) -> Raw:
        raise NotImplementedError

    def joins_bytes(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        """Whether the output's bytes are the inputs' bytes one after another (a copy of file spans)."""
        return False

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        """Steps that take input ``index`` back out of the combined tensor (a reverse conversion)."""
        raise ShapeError(f"{self} cannot be taken apart")

    @property
    def reversibility(self) -> Reversibility:
        return "exact" if self.exact else "equivalent"


@dataclass(frozen=True)
class Single(Combine):
    kind: ClassVar[str] = "single"
    first_only: ClassVar[bool] = True

    def shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0]

    def run(self, inputs: Sequence[Raw]) -> Raw:
        return inputs[0]

    def part(self, index: int, inputs: Sequence[TensorInfo]) -> tuple[Step, ...]:
        return ()


def same_shapes(kind: str, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"{kind}: the inputs have different shapes {[list(s) for s in shapes]}")
    return shapes[0]


# ------------------------------------------------------------------------------------------ rule-level


@dataclass(frozen=True)
class Field:
    """One YAML field of an op: its name, what it holds, and whether it must be given.

    ``kind`` is ``int`` (an integer or an expression giving one), ``ints`` (a list of those; ``count``
    fixes its length), ``number`` (an integer, a float or an expression), or ``value`` (an expression
    or a literal list, such as ``index_select``'s index).
    """

    name: str
    kind: Literal["int", "ints", "number", "value"]
    required: bool = True
    count: int | None = None
    help: str = ""


@dataclass(frozen=True)
class Doc:
    """An op's entry in docs/rules.md (generated by remap.ops.docs): what it does, how it is written, what
    undoes it, and an example rule (YAML lines under ``rules:``) that the docs tests run."""

    summary: str
    form: str  # how it is written, e.g. ``transpose: [A, B]``
    inverse: str  # what undoes it and how exactly, e.g. "itself; exact"
    example: str
    defaults: str = ""  # source.defaults the example needs, as a YAML flow mapping


class TensorOp:
    """One entry of a rule's ``ops:`` list, compiled: a registered class and its parameters.

    The YAML form is ``{NAME: VALUE}``, where VALUE is read by `main` (a field, or a mapping of
    `fields` when `main` is None), plus the extra keys in `extras` beside NAME.
    """

    name: ClassVar[str]
    main: ClassVar[Field | None] = None  # how ``NAME: VALUE`` reads when VALUE is not a mapping of fields
    fields: ClassVar[tuple[Field, ...]] = ()  # VALUE as a mapping (when main is None)
    extras: ClassVar[tuple[Field, ...]] = ()  # keys beside NAME (reshape's ``back``)
    doc: ClassVar[Doc]

    def __init__(self, params: Mapping[str, Any], loc: Loc) -> None:
        self.params = dict(params)
        self.loc = loc

    def __str__(self) -> str:
        if self.main is not None:
            return f"{self.name}({text_of(self.params[self.main.name])})"
        shown = ", ".join(f"{k}={text_of(v)}" for k, v in self.params.items())
        return f"{self.name}({shown})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorOp) and type(other) is type(self) and other.params == self.params

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items(), key=lambda kv: kv[0]))))

    def check(self) -> None:
        """Compile-time checks of the parameters beyond their schema (RuleError at the op's line)."""

    def steps(self, names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
        """The concrete steps for one tensor of ``info``; ``names`` hold the config, captures and ``shape``."""
        raise NotImplementedError

    def inverse(self) -> TensorOp | None:
        """The op that undoes this one before any tensor is known (reading rules backwards), or None."""
        return None

    def why_not_reversible(self) -> str:
        """Why a reverse conversion without --like could not undo this op ('' when it can)."""
        return "" if self.inverse() is not None else f"has {self.name}, which has no inverse"

    @property
    def reversibility(self) -> Reversibility:
        """How well the inverse restores the input, as far as the rule file says."""
        return "exact"

    @property
    def reversibility_note(self) -> str:
        """A caveat on `reversibility`, for lint ('' when there is none)."""
        return ""

    def param(self, name: str) -> Any:
        return self.params.get(name)


def scope(names: Mapping[str, Any], info: TensorInfo) -> dict[str, Any]:
    """What an op's expressions see: the config, the captures, and the incoming ``shape``."""
    return {**names, "shape": tuple(info.shape)}


Backwards = tuple[tuple[str, ...], Combine, tuple[tuple[Step, ...], ...]]
"""A reverse recipe's parts: the targets it reads (in order), how they combine, and each one's own steps."""


@dataclass(frozen=True)
class Output:
    """One output of a structure for one group: which target (``slot`` in the rule's ``to``), the captures
    its key adds (an unstack's index), and the steps that take it out of the combined tensor."""

    slot: int
    captures: Mapping[str, str]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Structure:
    """How a rule's sources become its targets: the rule-level op (``split: 0``, ``concat: {dim, over}``...).

    The YAML form is ``NAME: VALUE``: a mapping of `fields`, or a scalar that sets `shorthand`. A rule
    without one is a `Rename` (one source to one target, or to several identical targets: a tie).
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    shorthand: ClassVar[str] = "dim"
    exact: ClassVar[bool] = True  # outputs are the inputs' bytes rearranged (no arithmetic)
    arity: ClassVar[str] = ""  # what the rule must look like, said when it does not
    doc: ClassVar[Doc]

    dim: int = 0
    sizes: tuple[Param, ...] | None = None  # split: the size of each part (default: equal parts)
    over: str | None = None  # concat/stack/dedup over every value of this int capture
    index: str | None = None  # unstack: the name of the new index in the targets
    count: Expression | None = None  # dedup: how many copies there are (what a reverse conversion writes)

    def fits(self, n_sources: int, n_targets: int) -> bool:
        """Whether a rule with this many source patterns and targets can use this structure."""
        raise NotImplementedError

    def combine(self) -> Combine:
        """How the group's inputs become the one tensor the outputs are taken from."""
        return Single()

    def check_group(self, keys: Sequence[str], names: Mapping[str, Any]) -> None:
        """Refuse a group of inputs the structure cannot take (ShapeError)."""

    def outputs(self, n_targets: int, names: Mapping[str, Any], info: TensorInfo) -> list[Output]:
        """Each output of one group, taken from the combined tensor of ``info``."""
        return [Output(slot, {}, ()) for slot in range(n_targets)]

    def backwards(self, outputs: Sequence[tuple[str, tuple[Step, ...]]], combined: TensorInfo) -> Backwards:
        """How the combined tensor comes back from this structure's outputs (target key, its steps), for a
        single-input group. The steps start with what `outputs` put first."""
        raise ShapeError(f"{self.name} makes one output from several inputs; its inputs come back one by one")

    def combined_from(self, parts: Sequence[TensorInfo]) -> TensorInfo:
        """Reading rules backwards: the combined tensor, from the outputs' shapes (before their ops)."""
        return parts[0]

    def source_shapes(self, combined: TensorInfo, n_sources: int, names: Mapping[str, Any]) -> list[tuple[int, ...]]:
        """Reading rules backwards: each listed source's shape, from the combined tensor's."""
        return [tuple(combined.shape)] * n_sources

    def over_sources(self, combined: TensorInfo, names: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
        """Reading rules backwards, for a structure ``over`` a capture: how many sources, and their shape."""
        raise ShapeError(f"{self.name} does not take its sources over a capture")

    def blockers(self) -> list[tuple[str, bool]]:
        """Why a reverse conversion could not undo this structure exactly: (why, lossy?) pairs."""
        return []


STRUCTURES: dict[str, type[Structure]] = {}
TENSOR_OPS: dict[str, type[TensorOp]] = {}


def register(cls: Any) -> Any:
    """Class decorator: make a structure or a tensor op known by its ``name``."""
    table: dict[str, Any] = STRUCTURES if issubclass(cls, Structure) else TENSOR_OPS
    if cls.name in STRUCTURES or cls.name in TENSOR_OPS:
        raise RuntimeError(f"two ops are called {cls.name!r}")
    table[cls.name] = cls
    return cls
